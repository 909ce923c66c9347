// Control layer: watches a manifest directory with inotify (GitOps checkouts, Kubernetes ConfigMap mounts that swap
// a `..data` symlink) and calls back once per burst of changes.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public final class DirectoryWatcher: Sendable {
    public let directory: String
    private let fd: Int32

    public init(directory: String) throws(StateStoreError) {
        self.directory = directory
        fd = inotify_init1(Int32(IN_CLOEXEC))
        guard fd >= 0 else { throw StateStoreError(description: "inotify_init1: \(String(cString: strerror(errno)))") }
        let mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE)
        guard inotify_add_watch(fd, directory, mask) >= 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw StateStoreError(description: "watching \(directory): \(reason)")
        }
    }

    /// Starts a thread that calls `onChange` after each burst of changes (events within 100 ms are one burst).
    public func start(_ onChange: @escaping @Sendable () -> Void) {
        let fd = self.fd
        Thread.detachNewThread {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                // Drain the rest of the burst: an editor or `kubectl` writes several files and renames.
                var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                while poll(&poller, 1, 100) > 0 {
                    _ = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                }
                onChange()
            }
        }
    }
}
