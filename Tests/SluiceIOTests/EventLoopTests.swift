// Tests of EventLoop: delivery to handlers, deregistration, stale slots, deferred tasks, the deadline sweep, the
// waker and forEachHandler.
import XCTest
@testable import SluiceIO

final class EventLoopTests: XCTestCase {
    private let readable = Readiness.readable | Readiness.readHangup | Readiness.edgeTriggered
    private let both = Readiness.readable | Readiness.writable | Readiness.readHangup | Readiness.edgeTriggered

    func testEventsOfARegisteredSocketReachItsHandler() throws {
        let loop = try EventLoop(sweepIntervalMs: 5)
        let pair = SocketPair()
        let reader = RecordingHandler("reader"), writer = RecordingHandler("writer")
        reader.onEvents = { [unowned loop] _ in loop.stopAfterThisBatch() }
        _ = try loop.register(fd: pair.b, events: readable, handler: reader)
        _ = try loop.register(fd: pair.a, events: both, handler: writer)
        XCTAssertEqual(loop.registeredCount, 2)
        pair.send("ping")  // before run: both sockets are ready when the loop first waits, so one batch has both

        loop.runBounded()
        XCTAssertEqual(reader.events.count, 1)
        XCTAssertNotEqual(reader.events.first.map { $0 & Readiness.readable }, 0, "no readable bit")
        XCTAssertEqual(reader.events.first.map { $0 & Readiness.writable }, 0, "writable bit not registered for")
        XCTAssertEqual(writer.events.count, 1)
        XCTAssertNotEqual(writer.events.first.map { $0 & Readiness.writable }, 0, "a fresh socket is writable")
    }

    func testAPeerCloseReachesTheHandlerAsReadHangup() throws {
        let loop = try EventLoop(sweepIntervalMs: 5)
        let pair = SocketPair()
        let reader = RecordingHandler("reader")
        reader.onEvents = { [unowned loop] _ in loop.stopAfterThisBatch() }
        _ = try loop.register(fd: pair.b, events: readable, handler: reader)
        XCTAssertEqual(shutdown(pair.a, Int32(SHUT_WR)), 0)

        loop.runBounded()
        XCTAssertEqual(reader.events.count, 1)
        XCTAssertNotEqual(reader.events.first.map { $0 & Readiness.readHangup }, 0)
    }

    func testDeregisterStopsDelivery() throws {
        let loop = try EventLoop(sweepIntervalMs: 5)
        let gonePair = SocketPair(), sentinelPair = SocketPair()
        let gone = RecordingHandler("gone"), sentinel = RecordingHandler("sentinel")
        sentinel.onEvents = { [unowned loop] _ in loop.stopAfterThisBatch() }
        let goneRegistration = try loop.register(fd: gonePair.b, events: readable, handler: gone)
        _ = try loop.register(fd: sentinelPair.b, events: readable, handler: sentinel)
        loop.deregister(fd: gonePair.b, registration: goneRegistration)
        XCTAssertEqual(loop.registeredCount, 1)
        // Both are ready before the loop waits, so the batch that carries the sentinel's event would carry this one.
        gonePair.send("not for anyone")
        sentinelPair.send("ping")

        loop.runBounded()
        XCTAssertEqual(sentinel.events.count, 1)
        XCTAssertEqual(gone.events, [], "a deregistered handler got an event")
    }

    /// Two handlers ready in one batch; whichever runs first deregisters the other and registers a new handler,
    /// which takes the freed slot. The other's event, already in the batch, carries the old generation: it must not
    /// reach the new handler.
    func testAStaleEventForARecycledSlotIsIgnored() throws {
        let loop = try EventLoop(sweepIntervalMs: 5)
        let firstPair = SocketPair(), secondPair = SocketPair(), idlePair = SocketPair()
        let first = RecordingHandler("first"), second = RecordingHandler("second")
        let newcomer = RecordingHandler("newcomer")
        var registrations: [ObjectIdentifier: (fd: Int32, registration: Registration)] = [:]
        var recycledSlot: (old: Registration, new: Registration)?
        for (handler, other) in [(first, second), (second, first)] {
            handler.onEvents = { [unowned loop, unowned other, unowned newcomer] _ in
                guard recycledSlot == nil, let victim = registrations[ObjectIdentifier(other)] else { return }
                loop.deregister(fd: victim.fd, registration: victim.registration)
                let new = try? loop.register(fd: idlePair.b, events: Readiness.readable | Readiness.edgeTriggered, handler: newcomer)
                recycledSlot = new.map { (victim.registration, $0) }
                loop.stopAfterThisBatch()
            }
        }
        registrations[ObjectIdentifier(first)] = (firstPair.b, try loop.register(fd: firstPair.b, events: readable, handler: first))
        registrations[ObjectIdentifier(second)] = (secondPair.b, try loop.register(fd: secondPair.b, events: readable, handler: second))
        firstPair.send("1")
        secondPair.send("2")

        loop.runBounded()
        let slots = try XCTUnwrap(recycledSlot, "no handler ran")
        XCTAssertEqual(slots.new.slot, slots.old.slot, "the new handler did not reuse the freed slot")
        XCTAssertNotEqual(slots.new.generation, slots.old.generation)
        XCTAssertEqual(first.events.count + second.events.count, 1, "the deregistered handler got its event")
        XCTAssertEqual(newcomer.events, [], "the stale event reached the slot's new handler")
    }

    /// Deferred tasks run after every handler of the batch, in the order they were deferred; a task deferred by a
    /// task runs in the same drain, after them.
    func testDeferredTasksRunAfterTheBatchInOrder() throws {
        let loop = try EventLoop(sweepIntervalMs: 5)
        let pairA = SocketPair(), pairB = SocketPair()
        let a = RecordingHandler("a"), b = RecordingHandler("b")
        var log: [String] = []
        var deferredFirst = true
        for handler in [a, b] {
            handler.onEvents = { [unowned loop, unowned handler] _ in
                log.append("event " + handler.name)
                loop.runAfterThisBatch(ClosureTask {
                    log.append("task " + handler.name)
                    if deferredFirst {
                        deferredFirst = false
                        loop.runAfterThisBatch(ClosureTask { log.append("task of a task"); loop.stop() })
                    }
                })
            }
        }
        _ = try loop.register(fd: pairA.b, events: readable, handler: a)
        _ = try loop.register(fd: pairB.b, events: readable, handler: b)
        pairA.send("a")
        pairB.send("b")

        loop.runBounded()
        XCTAssertEqual(log.count, 5, "\(log)")
        guard log.count == 5 else { return }
        let order = log[0] == "event a" ? ["a", "b"] : ["b", "a"]
        XCTAssertEqual(log, ["event " + order[0], "event " + order[1], "task " + order[0], "task " + order[1], "task of a task"])
    }

    /// The sweep runs once the interval has passed and asks every registered handler, and only those, for its
    /// deadline, with the loop's clock (the one `onSweep` sees).
    func testTheSweepChecksTheDeadlineOfEveryRegisteredHandler() throws {
        let start = Posix.nowMilliseconds()
        let loop = try EventLoop(sweepIntervalMs: 20)
        let pairs = (0..<3).map { _ in SocketPair() }
        let handlers = (0..<3).map { RecordingHandler("h\($0)") }
        var registrations: [Registration] = []
        for (pair, handler) in zip(pairs, handlers) {
            registrations.append(try loop.register(fd: pair.b, events: readable, handler: handler))
        }
        loop.deregister(fd: pairs[2].b, registration: registrations[2])
        var sweeps: [Int64] = []
        loop.onSweep = { sweeps.append($0) }
        handlers[1].onDeadline = { [unowned loop] _ in loop.stop() }

        loop.runBounded()
        XCTAssertEqual(sweeps.count, 1)
        let sweep = try XCTUnwrap(sweeps.first)
        XCTAssertGreaterThanOrEqual(sweep, start + 20, "the sweep ran before its interval")
        XCTAssertEqual(handlers[0].deadlineChecks, [sweep])
        XCTAssertEqual(handlers[1].deadlineChecks, [sweep])
        XCTAssertEqual(handlers[2].deadlineChecks, [], "a deregistered handler was asked for its deadline")
        XCTAssertEqual(loop.now, sweep)
    }

    /// A wake-up from another thread reaches `onWake` on the loop's own thread, while the loop waits in epoll.
    func testAWakeFromAnotherThreadRunsOnWakeOnTheLoopThread() throws {
        let loop = try EventLoop(sweepIntervalMs: 50)
        let loopThread = pthread_self()
        var wakes = 0
        var onLoopThread = false
        loop.onWake = { [unowned loop] in
            wakes += 1
            onLoopThread = pthread_equal(pthread_self(), loopThread) != 0
            loop.stop()
        }
        let waker = loop.waker
        spawnThread(name: "test-waker") { waker.wake() }

        loop.runBounded()
        XCTAssertEqual(wakes, 1)
        XCTAssertTrue(onLoopThread)
    }

    func testForEachHandlerVisitsEveryRegisteredHandlerOnce() throws {
        let loop = try EventLoop()
        let pairs = (0..<3).map { _ in SocketPair() }
        let handlers = (0..<3).map { RecordingHandler("h\($0)") }
        var registrations: [Registration] = []
        for (pair, handler) in zip(pairs, handlers) {
            registrations.append(try loop.register(fd: pair.b, events: readable, handler: handler))
        }
        loop.deregister(fd: pairs[1].b, registration: registrations[1])

        var visited: [String] = []
        loop.forEachHandler { visited.append(($0 as! RecordingHandler).name) }
        XCTAssertEqual(visited, ["h0", "h2"])
    }

    /// The drain deadline's use: every visited handler closes itself, and one may close another not reached yet,
    /// which is then skipped. Nothing is left registered.
    func testForEachHandlerLetsHandlersDeregisterDuringTheVisit() throws {
        let loop = try EventLoop()
        let pairs = (0..<4).map { _ in SocketPair() }
        let handlers = (0..<4).map { RecordingHandler("h\($0)") }
        var registrations: [ObjectIdentifier: (fd: Int32, registration: Registration)] = [:]
        for (pair, handler) in zip(pairs, handlers) {
            registrations[ObjectIdentifier(handler)] = (pair.b, try loop.register(fd: pair.b, events: readable, handler: handler))
        }
        func close(_ handler: RecordingHandler) {
            guard let r = registrations.removeValue(forKey: ObjectIdentifier(handler)) else { return }
            loop.deregister(fd: r.fd, registration: r.registration)
        }

        var visited: [String] = []
        loop.forEachHandler { visitedHandler in
            let handler = visitedHandler as! RecordingHandler
            visited.append(handler.name)
            close(handler)
            if handler === handlers[0] { close(handlers[2]) }  // e.g. a downstream closing its upstream
        }
        XCTAssertEqual(visited, ["h0", "h1", "h3"])
        XCTAssertEqual(loop.registeredCount, 0)
    }

    /// A visit whose body registers new handlers still ends: handlers appended during it are not visited.
    func testForEachHandlerDoesNotVisitHandlersAppendedDuringTheVisit() throws {
        let loop = try EventLoop()
        let pair = SocketPair()
        let extraPairs = (0..<2).map { _ in SocketPair() }
        _ = try loop.register(fd: pair.b, events: readable, handler: RecordingHandler("old"))
        var visited: [String] = []
        var added = 0
        loop.forEachHandler { handler in
            visited.append((handler as! RecordingHandler).name)
            if added < extraPairs.count {
                _ = try? loop.register(fd: extraPairs[added].b, events: Readiness.readable, handler: RecordingHandler("new"))
                added += 1
            }
        }
        XCTAssertEqual(visited, ["old"])
        XCTAssertEqual(loop.registeredCount, 2)
    }

    /// A failed registration (here: a closed fd) leaves nothing registered and its slot free for the next one.
    func testAFailedRegistrationReleasesItsSlot() throws {
        let loop = try EventLoop()
        XCTAssertThrowsError(try loop.register(fd: -1, events: readable, handler: RecordingHandler("bad"))) { error in
            XCTAssertEqual((error as? IOError)?.errno, EBADF)
        }
        XCTAssertEqual(loop.registeredCount, 0)
        let pair = SocketPair()
        let registration = try loop.register(fd: pair.b, events: readable, handler: RecordingHandler("good"))
        XCTAssertEqual(registration.slot, 0)
        XCTAssertEqual(registration.generation, 1)
        XCTAssertEqual(loop.registeredCount, 1)
    }
}
