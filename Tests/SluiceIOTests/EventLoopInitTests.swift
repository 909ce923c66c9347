// Tests of EventLoop.init's error paths: a failed init closes every descriptor it opened (bug 7 of issue 7).
import Foundation
import XCTest
@testable import SluiceIO

final class EventLoopInitTests: XCTestCase {
    /// With exactly one descriptor number free, epoll_create1 takes it and eventfd fails with EMFILE: init must throw
    /// that error and close the epoll fd, so the number is free again afterwards.
    func testInitClosesTheEpollFDWhenEventfdFails() throws {
        var saved = rlimit()
        XCTAssertEqual(getrlimit(RLIMIT_NOFILE_ID, &saved), 0)
        // Every open descriptor stays below the new soft limit; every free number under it is then taken but one.
        let highest = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").compactMap { Int32($0) }.max() ?? 2
        var lowered = saved
        lowered.rlim_cur = rlim_t(highest + 16)
        XCTAssertEqual(setrlimit(RLIMIT_NOFILE_ID, &lowered), 0)
        var filler: [Int32] = []
        defer {
            filler.forEach { _ = close($0) }
            XCTAssertEqual(setrlimit(RLIMIT_NOFILE_ID, &saved), 0)
        }
        while true {
            let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
            if fd < 0 { XCTAssertEqual(errno, EMFILE); break }
            filler.append(fd)
            XCTAssertLessThan(filler.count, 1000, "the lowered limit did not bound open(2)")
            if filler.count >= 1000 { return }
        }
        close(filler.removeLast())

        XCTAssertThrowsError(try EventLoop()) { error in
            let io = error as? IOError
            XCTAssertEqual("\(io?.call ?? "none")", "eventfd")
            XCTAssertEqual(io?.errno, EMFILE)
        }
        let probe = open("/dev/null", O_RDONLY | O_CLOEXEC)
        XCTAssertGreaterThanOrEqual(probe, 0, "the failed init kept the epoll fd open")
        if probe >= 0 { filler.append(probe) }
    }
}

/// getrlimit/setrlimit take the resource as `__rlimit_resource_t` (an Int32) on glibc.
let RLIMIT_NOFILE_ID = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
