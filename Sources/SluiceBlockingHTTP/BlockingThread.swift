// A joinable POSIX thread for the blocking server's acceptor and connections, and the control plane's etcd session.

import Glibc

/// A POSIX thread running `body`; Foundation's Thread cannot be joined, and stop() must join the acceptor.
public final class BlockingThread: @unchecked Sendable {
    // @unchecked: `handle` is written once by `start` before any other thread can see the object.
    private var handle = pthread_t()
    private let body: @Sendable () -> Void

    private init(body: @escaping @Sendable () -> Void) {
        self.body = body
    }

    public static func start(detached: Bool, _ body: @escaping @Sendable () -> Void) throws(BlockingSocketError) -> BlockingThread {
        let thread = BlockingThread(body: body)
        // The retained reference travels through the C context pointer; the thread releases it when done.
        let context = Unmanaged.passRetained(thread).toOpaque()
        let status = pthread_create(&thread.handle, nil, { context in
            let thread = Unmanaged<BlockingThread>.fromOpaque(context!).takeRetainedValue()
            thread.body()
            return nil
        }, context)
        guard status == 0 else {
            Unmanaged<BlockingThread>.fromOpaque(context).release()
            throw BlockingSocketError(operation: "pthread_create", errno: status)
        }
        if detached { pthread_detach(thread.handle) }
        return thread
    }

    public func join() {
        pthread_join(handle, nil)
    }
}
