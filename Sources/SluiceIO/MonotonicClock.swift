// IO layer: the monotonic clock in nanoseconds, for request timestamps (the loop's millisecond clock is too coarse
// for latency histograms that start at 50 µs).
#if canImport(Glibc)
import Glibc
#endif

public enum MonotonicClock {
    /// CLOCK_MONOTONIC in nanoseconds (a vDSO call, no syscall).
    @inline(__always) public static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
