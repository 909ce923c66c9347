// Proxy layer: the replay buffer of a request's attempts — a copy of every request byte sent toward the pod, kept
// while it stays within the buffering limit, so that an attempt that failed before any answer can be followed by
// another (on a fresh connection, or toward another endpoint). The HTTP/1.1 Exchange and the gRPC relay both keep
// theirs with it; which failures get another attempt is their caller's policy.
import SluiceIO

struct ReplayBuffer {
    /// The bytes kept so far (a pooled buffer), or nil.
    private(set) var bytes: ByteBuffer?
    /// False once a byte could not be kept (or the bytes were taken for a retry): no further attempt can replay.
    private(set) var holdsEverything = true

    /// Starts keeping bytes, unless it gave up already or keeps some.
    mutating func start(_ buffers: BufferPool) {
        guard holdsEverything, bytes == nil else { return }
        bytes = buffers.take()
    }

    /// Keeps `more`; past `limit` in all, gives the buffer back and gives up.
    mutating func keep(_ more: UnsafeRawBufferPointer, limit: Int, _ buffers: BufferPool) {
        guard let kept = bytes else { return }
        if kept.readableBytes + more.count <= limit {
            kept.append(more)
        } else {
            giveUp(buffers)
        }
    }

    /// No attempt will replay from here on: the buffer goes back.
    mutating func giveUp(_ buffers: BufferPool) {
        release(buffers)
        holdsEverything = false
    }

    /// Every byte sent so far, for another attempt to send again; kept for the attempts after it. Nil once a byte
    /// could not be kept.
    var replayable: ByteBuffer? { holdsEverything ? bytes : nil }

    /// Hands the bytes to the next attempt (the caller owns the buffer from here); one replay only.
    mutating func take() -> ByteBuffer? {
        guard holdsEverything, let kept = bytes else { return nil }
        bytes = nil
        holdsEverything = false
        return kept
    }

    /// Gives the buffer back (the request body goes nowhere any more) without deciding about later attempts.
    mutating func release(_ buffers: BufferPool) {
        if let kept = bytes { buffers.give(kept) }
        bytes = nil
    }
}
