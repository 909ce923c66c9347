// Test support for the event loop tests: a handler that records what the loop tells it, a deferred closure, and a
// bounded run.
import XCTest
@testable import SluiceIO

/// Records the events and deadline checks it is given, and runs the test's closures on them.
final class RecordingHandler: EventHandler {
    let name: String
    var events: [UInt32] = []
    var deadlineChecks: [Int64] = []
    var onEvents: ((UInt32) -> Void)?
    var onDeadline: ((Int64) -> Void)?

    init(_ name: String) { self.name = name }

    func handle(events: UInt32) {
        self.events.append(events)
        onEvents?(events)
    }

    func checkDeadline(now: Int64) {
        deadlineChecks.append(now)
        onDeadline?(now)
    }
}

/// A closure run by `runAfterThisBatch`.
final class ClosureTask: DeferredTask {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
    func runDeferred() { body() }
}

extension EventLoop {
    /// Stops the loop once the current batch (and its deferred tasks queued so far) is done.
    func stopAfterThisBatch() {
        runAfterThisBatch(ClosureTask { [unowned self] in self.stop() })
    }

    /// Runs until the test stops the loop; fails the test and stops it when that has not happened within `timeoutMs`
    /// (checked at each sweep, so loops under test sweep often). A loop runs once: `stop` is final.
    func runBounded(timeoutMs: Int64 = 5000, file: StaticString = #filePath, line: UInt = #line) {
        let deadline = Posix.nowMilliseconds() + timeoutMs
        let testSweep = onSweep
        var timedOut = false
        onSweep = { [unowned self] now in
            testSweep?(now)
            if now >= deadline {
                timedOut = true
                self.stop()
            }
        }
        run()
        onSweep = testSweep
        XCTAssertFalse(timedOut, "the loop was not stopped within \(timeoutMs) ms", file: file, line: line)
    }
}
