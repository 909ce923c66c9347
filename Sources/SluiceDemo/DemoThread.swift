// A joinable POSIX thread for the demo server's acceptor and connections (SluiceDemo).

import Glibc

/// A POSIX thread running `body`; Foundation's Thread cannot be joined, and stop() must join the acceptor.
final class DemoThread: @unchecked Sendable {
    // @unchecked: `handle` is written once by `start` before any other thread can see the object.
    private var handle = pthread_t()
    private let body: @Sendable () -> Void

    private init(body: @escaping @Sendable () -> Void) {
        self.body = body
    }

    static func start(detached: Bool, _ body: @escaping @Sendable () -> Void) throws(DemoSocketError) -> DemoThread {
        let thread = DemoThread(body: body)
        // The retained reference travels through the C context pointer; the thread releases it when done.
        let context = Unmanaged.passRetained(thread).toOpaque()
        let status = pthread_create(&thread.handle, nil, { context in
            let thread = Unmanaged<DemoThread>.fromOpaque(context!).takeRetainedValue()
            thread.body()
            return nil
        }, context)
        guard status == 0 else {
            Unmanaged<DemoThread>.fromOpaque(context).release()
            throw DemoSocketError(operation: "pthread_create", errno: status)
        }
        if detached { pthread_detach(thread.handle) }
        return thread
    }

    func join() {
        pthread_join(handle, nil)
    }
}
