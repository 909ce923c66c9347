// Control layer: the takeover protocol's wire — its messages, one line each, one at a time, on the claim socket of
// the client listener (TakeoverServer answers in the running process, TakeoverClient asks from the new one).
import SluiceIO
#if canImport(Glibc)
import Glibc
#endif

/// A takeover that cannot go on, with what an operator needs to know.
public struct TakeoverError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Version 1, one line per message, one message at a time, the new process speaking first:
///
///     new → "sluice-takeover 1"   old → "listeners <pid> <address> <count>"  + SCM_RIGHTS [claim, listener × count]
///     new → "release"             old → "released"   (admin and metrics ports, their claims, the state directory)
///     new → "drain"               old → "draining"   (then it drains as on SIGTERM, and exits)
///     new → "abort <reason>"      (a check failed before "release": the old process carries on as before)
///
/// and, from a second plain start asking who serves the address: "who" → "pid <pid>".
///
/// The new process sends "drain" only once its workers accept on the inherited sockets: the kernel's accept queues
/// are shared by both processes, so no connection waits for a listener that is gone.
enum TakeoverWire {
    static let hello = "sluice-takeover 1"
    static let who = "who"
    /// Each answer has this long to come: the new process loads its state between "listeners" and "release".
    static let timeoutMs = 30_000

    static func send(_ fd: Int32, _ line: String) throws(TakeoverError) {
        do { try FDPassing.write(fd, Array((line + "\n").utf8)) } catch { throw TakeoverError("takeover: send \(line.split(separator: " ").first ?? ""): \(error)") }
    }

    /// One line without its newline; nil at the end of the stream, a timeout or an over-long line.
    static func readLine(_ fd: Int32) -> String? {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while line.count < 4096 {
            let n = recv(fd, &byte, 1, 0)
            if n < 0 && errno == EINTR { continue }
            guard n == 1 else { return nil }
            if byte == UInt8(ascii: "\n") { return String(decoding: line, as: UTF8.self) }
            line.append(byte)
        }
        return nil
    }
}
