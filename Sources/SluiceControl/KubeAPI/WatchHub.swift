// Control layer: the recent history of object changes (a bounded ring, like the API server's watch cache) that
// watches read from and continued lists rebuild their snapshot from, and the wake-ups of the threads watching.
import Glibc
import Synchronization

public final class WatchHub: Sendable {
    /// One change as a watch sends it: the object after (for a deletion, as it was, with the deletion's version)
    /// and before (nil when created), both as GET shows them.
    public struct Entry: Sendable {
        public var kind: ObjectChange.Kind
        public var namespace: String
        public var name: String
        public var resourceVersion: UInt64
        public var object: JSONValue
        public var previous: JSONValue?
    }

    /// Asked for history the ring no longer holds: `oldest` is the oldest version a watch can start from.
    public struct TooOld: Error, Sendable {
        public var requested: UInt64
        public var oldest: UInt64
    }

    private struct State {
        var entries: [Entry] = []
        /// Every change after this version is in `entries` (the version before the oldest kept one).
        var floor: UInt64
        /// Each watcher's pipe: it waits on the read end, `record` writes a byte to the write end.
        var waiters: [Int: (read: Int32, write: Int32)] = [:]
        var nextWaiter = 0
    }

    private let state: Mutex<State>
    let capacity: Int

    /// `floor`: the store's version when the history starts (nothing before it can be replayed).
    init(floor: UInt64, capacity: Int = 1024) {
        state = Mutex(State(floor: floor))
        self.capacity = capacity
    }

    /// Appends changes (called under the plane's lock, so entries arrive in version order) and wakes every watcher.
    func record(_ entries: [Entry]) {
        guard !entries.isEmpty else { return }
        state.withLock { state in
            state.entries.append(contentsOf: entries)
            if state.entries.count > capacity {
                let dropped = state.entries.count - capacity
                state.floor = state.entries[dropped - 1].resourceVersion
                state.entries.removeFirst(dropped)
            }
            var one: UInt8 = 1
            // A full pipe is already readable: the failed write loses nothing.
            for pipe in state.waiters.values { _ = Glibc.write(pipe.write, &one, 1) }
        }
    }

    /// The changes after `version`, oldest first; TooOld when some of them are no longer kept.
    func entries(after version: UInt64) -> Result<[Entry], TooOld> {
        state.withLock { state in
            guard version >= state.floor else { return .failure(TooOld(requested: version, oldest: state.floor)) }
            // Versions grow along the ring: find the first one after `version` from the end (watchers are near it).
            var start = state.entries.endIndex
            while start > state.entries.startIndex, state.entries[start - 1].resourceVersion > version { start -= 1 }
            return .success(Array(state.entries[start...]))
        }
    }

    /// A descriptor that becomes readable after each `record` until `unsubscribe`; nil when none can be made.
    func subscribe() -> (id: Int, fd: Int32)? {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return nil }
        // Glibc's module map leaves pipe2 out, so the flags are set afterwards (the gateway never forks or execs, so
        // no child can inherit the descriptors in between).
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        return state.withLock { state in
            let id = state.nextWaiter
            state.nextWaiter += 1
            state.waiters[id] = (fds[0], fds[1])
            return (id, fds[0])
        }
    }

    func unsubscribe(_ id: Int) {
        guard let pipe = state.withLock({ $0.waiters.removeValue(forKey: id) }) else { return }
        close(pipe.read)
        close(pipe.write)
    }

    /// Empties a subscription's descriptor after a wake-up (the next `record` makes it readable again).
    static func drain(_ fd: Int32) {
        var bytes = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        while withUnsafeMutableBytes(of: &bytes, { read(fd, $0.baseAddress, $0.count) }) > 0 {}
    }

    /// Open watches, for tests and /metrics.
    public var watcherCount: Int { state.withLock { $0.waiters.count } }
}
