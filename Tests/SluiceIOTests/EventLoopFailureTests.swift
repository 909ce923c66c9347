// Tests of EventLoop.run when epoll_wait fails for a reason other than EINTR: the process traps with the errno
// instead of spinning (bug 7 of issue 7). The trap runs in a child process: this test binary, re-run on one test.
import Foundation
import XCTest
@testable import SluiceIO

final class EventLoopFailureTests: XCTestCase {
    private static let childVariable = "SLUICE_IO_EPOLL_FAILURE_CHILD"

    func testAFailingEpollWaitTrapsWithItsErrno() throws {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
        child.arguments = ["SluiceIOTests.EventLoopFailureTests/testChildRunsALoopWhoseEpollFDWasReplaced"]
        var environment = ProcessInfo.processInfo.environment
        environment[Self.childVariable] = "1"
        environment["SWIFT_BACKTRACE"] = "enable=no"  // a symbolicated backtrace would only slow the child down
        child.environment = environment
        let errors = Pipe()
        child.standardError = errors
        child.standardOutput = FileHandle.nullDevice
        try child.run()

        // Before the fix the loop spun for ever; bound the wait and kill the child then.
        let deadline = Date().addingTimeInterval(20)
        while child.isRunning && Date() < deadline { usleep(10_000) }
        let spun = child.isRunning
        if spun { child.terminate() }
        child.waitUntilExit()
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)

        XCTAssertFalse(spun, "the loop kept running after epoll_wait failed")
        XCTAssertEqual(child.terminationReason, .uncaughtSignal, "child output: \(stderr)")
        XCTAssertTrue(stderr.contains("epoll_wait: Invalid argument (errno \(EINVAL))"), "child output: \(stderr)")
    }

    /// The child's half: replaces the loop's epoll fd with /dev/null (what code closing a number it does not own
    /// leads to), so epoll_wait fails with EINVAL, and runs the loop, which must trap.
    func testChildRunsALoopWhoseEpollFDWasReplaced() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment[Self.childVariable] != nil,
                          "runs only as the child of testAFailingEpollWaitTrapsWithItsErrno")
        let before = try epollDescriptors()
        let loop = try EventLoop(sweepIntervalMs: 5)
        let created = try epollDescriptors().subtracting(before)
        XCTAssertEqual(created.count, 1)
        let epfd = try XCTUnwrap(created.first)
        let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        XCTAssertEqual(dup2(devNull, epfd), epfd)
        loop.run()
        XCTFail("run returned")
    }

    private func epollDescriptors() throws -> Set<Int32> {
        var found: Set<Int32> = []
        for name in try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            guard let fd = Int32(name),
                  let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + name),
                  target == "anon_inode:[eventpoll]" else { continue }
            found.insert(fd)
        }
        return found
    }
}
