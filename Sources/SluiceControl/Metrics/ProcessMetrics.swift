// Control layer: the standard `process_*` metrics, read at scrape time from /proc/self and getrlimit with the names,
// units and meanings the Prometheus client libraries give them (client_golang's process collector).
import Foundation
import SluiceProxy
#if canImport(Glibc)
import Glibc
#endif

public struct ProcessMetrics: Equatable, Sendable {
    public var cpuSeconds: Double
    public var residentMemoryBytes: Int
    public var virtualMemoryBytes: Int
    public var openFDs: Int
    public var maxFDs: Int
    public var startTimeSeconds: Double

    /// This process now; nil where /proc is not mounted (the families are then left out, as client_golang does).
    public static func current() -> ProcessMetrics? {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let systemStat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let bootTime = systemStat.split(separator: "\n").first(where: { $0.hasPrefix("btime ") })
                  .flatMap({ Double($0.dropFirst("btime ".count).trimmingCharacters(in: .whitespaces)) }),
              let fields = parse(stat: stat) else { return nil }
        let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        var limit = rlimit()
        let maxFDs = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 ? Int(clamping: limit.rlim_cur) : 0
        // The directory listing holds a descriptor of its own while it runs, as client_golang's does.
        let openFDs = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        return ProcessMetrics(
            cpuSeconds: Double(fields.userTicks + fields.systemTicks) / ticksPerSecond,
            residentMemoryBytes: fields.residentPages * pageSize,
            virtualMemoryBytes: fields.virtualBytes,
            openFDs: openFDs,
            maxFDs: maxFDs,
            startTimeSeconds: bootTime + Double(fields.startTicks) / ticksPerSecond)
    }

    /// The fields of `/proc/self/stat` (proc(5)) these metrics need. The command name (field 2) is in parentheses
    /// and may hold spaces and parentheses itself, so fields are counted from the last `)`.
    static func parse(stat: String) -> (userTicks: Int, systemTicks: Int, startTicks: Int, virtualBytes: Int, residentPages: Int)? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let rest = stat[stat.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        // rest[0] is field 3 (state): field n is rest[n - 3].
        func field(_ n: Int) -> Int? { rest.count > n - 3 ? Int(rest[n - 3].trimmingCharacters(in: .whitespacesAndNewlines)) : nil }
        guard let utime = field(14), let stime = field(15), let start = field(22), let vsize = field(23), let rss = field(24) else { return nil }
        return (utime, stime, start, vsize, rss)
    }

    /// Writes the families of this process now.
    public static func write(into exposition: inout MetricsExposition) {
        current()?.write(into: &exposition)
    }

    public func write(into exposition: inout MetricsExposition) {
        exposition.family("process_cpu_seconds", .counter, help: "Total user and system CPU time spent in seconds.")
        exposition.counter(MetricLabels(), real: cpuSeconds)
        exposition.family("process_open_fds", .gauge, help: "Number of open file descriptors.")
        exposition.gauge(MetricLabels(), openFDs)
        exposition.family("process_max_fds", .gauge, help: "Maximum number of open file descriptors.")
        exposition.gauge(MetricLabels(), maxFDs)
        exposition.family("process_virtual_memory_bytes", .gauge, help: "Virtual memory size in bytes.")
        exposition.gauge(MetricLabels(), virtualMemoryBytes)
        exposition.family("process_resident_memory_bytes", .gauge, help: "Resident memory size in bytes.")
        exposition.gauge(MetricLabels(), residentMemoryBytes)
        exposition.family("process_start_time_seconds", .gauge, help: "Start time of the process since unix epoch in seconds.")
        exposition.gauge(MetricLabels(), startTimeSeconds)
    }

    /// `sluice_build_info{version="…"} 1`, the usual way to expose a version (a gauge that is always 1).
    public static func writeBuildInfo(version: String, into exposition: inout MetricsExposition) {
        exposition.family("sluice_build_info", .gauge, help: "Always 1; the labels say which Sluice is running.")
        exposition.gauge(MetricLabels(["version": version]), 1)
    }
}
