// Control layer: the durable state directory — one JSON document written atomically (temp file, fsync, rename,
// fsync of the directory) so that after a crash at any moment the file is either the old or the new state.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public struct StateStoreError: Error, CustomStringConvertible {
    public let description: String
}

public final class StateStore: @unchecked Sendable {  // used under the control plane's lock only
    public let directory: String
    private var lockFD: Int32
    static let fileName = "state.json"

    /// Opens (creating if needed) the directory and takes an exclusive lock on it: two gateways must never
    /// write one state directory. `waitMs`: how long to wait for the lock to be released (a takeover waits for the
    /// old process, which releases it when told to drain); 0 refuses at once.
    public init(directory: String, waitMs: Int = 0) throws(StateStoreError) {
        self.directory = directory
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw StateStoreError(description: "state directory \(directory): \(error.localizedDescription)")
        }
        let fd = open(directory + "/lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StateStoreError(description: "state directory \(directory): cannot open lock file: \(String(cString: strerror(errno)))") }
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let until = Int(deadline.tv_sec) * 1000 + Int(deadline.tv_nsec) / 1_000_000 + waitMs
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            if Int(now.tv_sec) * 1000 + Int(now.tv_nsec) / 1_000_000 >= until {
                close(fd)
                throw StateStoreError(description: "state directory \(directory) is in use by another sluice process"
                                      + (waitMs > 0 ? " (still locked after \(waitMs) ms)" : ""))
            }
            usleep(5_000)
        }
        lockFD = fd
    }

    deinit { unlock() }

    /// Gives up the directory (at shutdown, or handed to a process taking over): another process may take it from
    /// here on, and this store writes nothing more.
    public func unlock() {
        guard lockFD >= 0 else { return }
        close(lockFD)
        lockFD = -1
    }

    var path: String { directory + "/" + Self.fileName }

    /// Whether a document was ever written here.
    public var hasDocument: Bool { FileManager.default.fileExists(atPath: path) }

    /// The stored document, or nil when none was ever written.
    public func load() throws(StateStoreError) -> Data? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        do {
            return try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw StateStoreError(description: "\(path): cannot read: \(error.localizedDescription)")
        }
    }

    /// Replaces the document atomically and durably; returns only once it is on disk.
    public func save(_ data: Data) throws(StateStoreError) {
        // Released (handed over): the directory may be another process's now; writing would overwrite its state.
        guard lockFD >= 0 else { throw StateStoreError(description: "state directory \(directory) was released (handed to another process)") }
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw failure("create \(temporary)") }
        let written = data.withUnsafeBytes { raw -> Bool in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return false }
                offset += n
            }
            return true
        }
        guard written, fsync(fd) == 0 else { let error = failure("write \(temporary)"); close(fd); return try throwing(error) }
        close(fd)
        guard rename(temporary, path) == 0 else { throw failure("rename \(temporary)") }
        let dir = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dir >= 0 else { throw failure("open \(directory)") }
        defer { close(dir) }
        guard fsync(dir) == 0 else { throw failure("fsync \(directory)") }
    }

    private func failure(_ what: String) -> StateStoreError {
        StateStoreError(description: "\(what): \(String(cString: strerror(errno)))")
    }

    private func throwing(_ error: StateStoreError) throws(StateStoreError) { throw error }
}
