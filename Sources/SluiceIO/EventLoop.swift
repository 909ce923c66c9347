// IO layer: one epoll instance driven by one thread, with an eventfd to wake it and a coarse deadline sweep.
import CSluice
#if canImport(Glibc)
import Glibc
#endif

/// Something registered with a loop: told which readiness events arrived, and asked to check its deadline.
public protocol EventHandler: AnyObject {
    func handle(events: UInt32)
    /// Called by the periodic sweep; `now` is the loop's monotonic clock in milliseconds.
    func checkDeadline(now: Int64)
}

/// Work a handler wants done once after the current batch of events (coalescing writes: h2o's flush at end of tick).
public protocol DeferredTask: AnyObject {
    func runDeferred()
}

public enum Readiness {
    public static let readable = UInt32(CSLUICE_EPOLLIN)
    public static let writable = UInt32(CSLUICE_EPOLLOUT)
    public static let error = UInt32(CSLUICE_EPOLLERR)
    public static let hangup = UInt32(CSLUICE_EPOLLHUP)
    public static let readHangup = UInt32(CSLUICE_EPOLLRDHUP)
    /// Edge-triggered: each socket is registered once for both directions and never modified;
    /// handlers read until EAGAIN (or remember that they stopped early) and write until EAGAIN.
    public static let edgeTriggered = UInt32(1) << 31
}

/// A handle to a registration. The generation makes events for a recycled slot (and so a reused fd) harmless.
public struct Registration: Equatable, Sendable {
    let slot: UInt32
    let generation: UInt32
    var packed: UInt64 { UInt64(generation) << 32 | UInt64(slot) }
}

public final class EventLoop {
    private let epfd: Int32
    private let wakeFD: Int32
    private var handlers: [EventHandler?] = []
    private var generations: [UInt32] = []
    private var freeSlots: [UInt32] = []
    private var events: UnsafeMutablePointer<csluice_event>
    private let maxEvents: Int32 = 256
    private var isRunning = true
    /// The loop's clock, refreshed once per wake-up (cheaper than a clock read per use).
    public private(set) var now: Int64
    /// How often deadlines are swept; timeouts fire within this much of their deadline.
    public let sweepIntervalMs: Int64
    private var nextSweep: Int64
    /// Called after an eventfd wake-up (hand-over of a new configuration, shutdown).
    public var onWake: (() -> Void)?
    /// Called once per sweep, before the handlers are checked.
    public var onSweep: ((Int64) -> Void)?
    private var deferred: [DeferredTask] = []
    private var running: [DeferredTask] = []

    public init(sweepIntervalMs: Int64 = 100) throws(IOError) {
        precondition(sweepIntervalMs > 0 && sweepIntervalMs <= Int64(Int32.max), "sweep interval out of range")
        // Each step closes what the earlier ones opened when it fails: a worker that cannot start must not leak fds.
        let epfd = try Posix.epollCreate()
        let wakeFD: Int32
        do { wakeFD = try Posix.eventfd() } catch { Posix.close(epfd); throw error }
        // The wake fd uses data 0xFFFF_FFFF_FFFF_FFFF, a value no registration can pack to.
        do { try Posix.epollAdd(epfd, wakeFD, events: Readiness.readable, data: UInt64.max) } catch {
            Posix.close(wakeFD)
            Posix.close(epfd)
            throw error
        }
        self.epfd = epfd
        self.wakeFD = wakeFD
        events = .allocate(capacity: Int(maxEvents))
        now = Posix.nowMilliseconds()
        self.sweepIntervalMs = sweepIntervalMs
        nextSweep = now + sweepIntervalMs
    }

    deinit {
        events.deallocate()
        Posix.close(epfd)
        Posix.close(wakeFD)
    }

    /// A thread-safe way to wake this loop from elsewhere.
    public var waker: Waker { Waker(fd: wakeFD) }

    public func register(fd: Int32, events: UInt32, handler: EventHandler) throws(IOError) -> Registration {
        let slot: UInt32
        if let s = freeSlots.popLast() {
            slot = s
            handlers[Int(s)] = handler
        } else {
            slot = UInt32(handlers.count)
            handlers.append(handler)
            generations.append(0)
        }
        let registration = Registration(slot: slot, generation: generations[Int(slot)])
        do { try Posix.epollAdd(epfd, fd, events: events, data: registration.packed) } catch {
            release(registration)
            throw error
        }
        return registration
    }

    public func modify(fd: Int32, events: UInt32, registration: Registration) {
        // Fails only for an fd that is not registered or already closed: the caller's bug, and harmless here.
        try? Posix.epollModify(epfd, fd, events: events, data: registration.packed)
    }

    /// Gives a registration to another handler (a protocol hand-over): the same fd and epoll entry, no syscall. Events
    /// from then on go to `handler`.
    public func replaceHandler(of registration: Registration, with handler: EventHandler) {
        let i = Int(registration.slot)
        precondition(generations[i] == registration.generation && handlers[i] != nil, "replaceHandler: a stale registration")
        handlers[i] = handler
    }

    /// Removes the handler; closing the fd afterwards removes it from epoll.
    public func deregister(fd: Int32, registration: Registration) {
        // An fd closed already has left epoll by itself (ENOENT/EBADF here): the handler is released all the same.
        try? Posix.epollRemove(epfd, fd)
        release(registration)
    }

    private func release(_ registration: Registration) {
        let i = Int(registration.slot)
        guard generations[i] == registration.generation else { return }
        handlers[i] = nil
        generations[i] &+= 1
        freeSlots.append(registration.slot)
    }

    public var registeredCount: Int { handlers.count - freeSlots.count }

    /// Visits every registered handler, in slot order: the worker force-closes them all when the drain deadline
    /// passes, and the sweep checks their deadlines. `body` may deregister any handler, the visited one included (a
    /// deregistered one not reached yet is skipped); a handler registered during the visit is visited only if it
    /// lands in a freed slot not reached yet, so a visit that keeps registering still ends.
    public func forEachHandler(_ body: (EventHandler) -> Void) {
        let count = handlers.count
        var i = 0
        while i < count {
            if let handler = handlers[i] { body(handler) }
            i += 1
        }
    }

    /// Runs `task` once after every event of the current batch has been handled (tasks may defer more).
    public func runAfterThisBatch(_ task: DeferredTask) {
        deferred.append(task)
    }

    private func runDeferredTasks() {
        while !deferred.isEmpty {
            swap(&deferred, &running)  // two arrays, so that neither is copied or reallocated per batch
            for task in running { task.runDeferred() }
            running.removeAll(keepingCapacity: true)
        }
    }

    public func stop() { isRunning = false }

    /// Runs until `stop()`.
    ///
    /// epoll_wait fails only with EINTR (retried by `Posix`), or with EBADF, EFAULT or EINVAL, which all mean that this
    /// loop's own state is broken: its epoll fd was closed or replaced by code that closed a number it did not own,
    /// or the events array is bad. That is a bug of ours, and the loop traps (STYLE: precondition for our own bugs)
    /// rather than logging and stopping: a worker whose loop has stopped keeps its SO_REUSEPORT listener open, so the
    /// kernel would go on handing it connections that nobody serves, and a spinning loop burns a core; a crash is
    /// loud, and Kubernetes restarts the pod.
    public func run() {
        while isRunning {
            let timeout = Int32(clamping: max(0, min(nextSweep - now, sweepIntervalMs)))
            let n: Int32
            switch Posix.epollWait(epfd, events, max: maxEvents, timeoutMs: timeout) {
            case .done(let count): n = count
            case .wouldBlock: fatalError("\(IOError("epoll_wait", EAGAIN)), which it never returns")
            case .failed(let e): fatalError("\(IOError("epoll_wait", e)): the event loop's own state is broken")
            }
            now = Posix.nowMilliseconds()
            for i in 0..<Int(n) {
                let event = events[i]
                if event.data == UInt64.max {
                    Posix.eventfdDrain(wakeFD)
                    onWake?()
                    continue
                }
                let slot = Int(truncatingIfNeeded: event.data & 0xFFFF_FFFF)
                let generation = UInt32(truncatingIfNeeded: event.data >> 32)
                // A handler closed earlier in this batch may have freed (and even reused) the slot.
                guard slot < handlers.count, generations[slot] == generation, let handler = handlers[slot] else { continue }
                handler.handle(events: event.events)
            }
            runDeferredTasks()
            if now >= nextSweep {
                nextSweep = now + sweepIntervalMs
                onSweep?(now)
                let now = self.now
                forEachHandler { $0.checkDeadline(now: now) }
            }
        }
        // What the last sweep or batch deferred (closes at the drain deadline, pools' teardown) still runs, so that
        // nothing is left half torn down when the owner releases the loop.
        runDeferredTasks()
    }
}

/// Wakes a loop from any thread.
public struct Waker: Sendable {
    let fd: Int32
    public func wake() { Posix.eventfdSignal(fd) }
}
