// Tests of Posix.read under a real signal: a read(2) interrupted by a handler (EINTR) is retried, not reported.
import Foundation
import Synchronization
import XCTest
@testable import SluiceIO

/// How often the test's SIGUSR1 handler ran (a signal handler can only reach globals).
private let signalsHandled = Atomic<Int>(0)

final class PosixSignalTests: XCTestCase {
    /// A thread blocks in Posix.read on an empty pipe; the test waits until the kernel shows it inside read(2) on that
    /// fd (/proc/self/task/*/syscall), interrupts it with a signal whose handler is installed without SA_RESTART, so
    /// read(2) returns EINTR, waits until the thread is back inside read(2), and only then writes. Without the retry
    /// the thread's result would be `.failed(EINTR)`.
    func testAReadInterruptedByASignalIsRetried() throws {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in signalsHandled.add(1, ordering: .relaxed) }
        action.sa_flags = 0  // no SA_RESTART: the kernel does not restart the read itself
        sigemptyset(&action.sa_mask)
        var previous = sigaction()
        XCTAssertEqual(sigaction(SIGUSR1, &action, &previous), 0)
        defer { sigaction(SIGUSR1, &previous, nil) }

        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&fds), 0)  // blocking: the reader sleeps in read(2) until data comes
        defer { close(fds[1]); close(fds[0]) }  // the write end first: a reader still waiting gets end of file
        let reader = ReaderThread(fd: fds[0])
        reader.start()

        let firstRead = try XCTUnwrap(waitForTask(blockedInReadOn: fds[0]), "the reader never blocked in read(2)")
        let before = signalsHandled.load(ordering: .relaxed)
        XCTAssertEqual(pthread_kill(reader.thread(), SIGUSR1), 0)
        XCTAssertTrue(wait { signalsHandled.load(ordering: .relaxed) > before }, "the signal handler never ran")
        // Back in read(2) after the handler: the only way there is Posix.read calling read(2) again.
        let secondRead = waitForTask(blockedInReadOn: fds[0])
        XCTAssertEqual(secondRead, firstRead, "the reader did not go back into read(2)")
        XCTAssertNil(reader.result, "the reader returned on the signal")

        XCTAssertEqual(Glibc.write(fds[1], "data", 4), 4)
        XCTAssertTrue(wait { reader.result != nil }, "the reader never returned")
        XCTAssertEqual(reader.result, .bytes(4))
    }

    /// The task (thread id) whose current syscall is read(2) on `fd`, within 5 s.
    private func waitForTask(blockedInReadOn fd: Int32) -> String? {
        #if arch(arm64)
        let readNumber = "63"
        #else
        let readNumber = "0"  // x86_64
        #endif
        let prefix = readNumber + " 0x" + String(fd, radix: 16) + " "
        var found: String?
        _ = wait {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
            found = tasks.first { task in
                let line = (try? String(contentsOfFile: "/proc/self/task/\(task)/syscall", encoding: .utf8)) ?? ""
                return line.hasPrefix(prefix)
            }
            return found != nil
        }
        return found
    }

    /// Polls `condition` every millisecond for at most 5 s.
    private func wait(_ condition: () -> Bool) -> Bool {
        let deadline = Posix.nowMilliseconds() + 5000
        while Posix.nowMilliseconds() < deadline {
            if condition() { return true }
            usleep(1000)
        }
        return condition()
    }
}

/// A thread making one Posix.read, publishing its pthread and its result.
private final class ReaderThread: Sendable {
    let fd: Int32
    private let state = Mutex<(thread: pthread_t?, result: IOResult?)>((nil, nil))

    init(fd: Int32) { self.fd = fd }

    func start() {
        spawnThread(name: "test-reader") { [self] in
            state.withLock { $0.thread = pthread_self() }
            var bytes = (UInt64(0), UInt64(0))
            let result = withUnsafeMutableBytes(of: &bytes) { Posix.read(fd, $0.baseAddress!, $0.count) }
            state.withLock { $0.result = result }
        }
    }

    func thread() -> pthread_t { state.withLock { $0.thread }! }

    var result: IOResult? { state.withLock { $0.result } }
}
