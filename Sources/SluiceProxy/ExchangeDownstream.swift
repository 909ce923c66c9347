// Proxy layer: what an Exchange needs from the client side, whatever protocol it speaks — the request body
// source and the response sink. DownstreamConnection (HTTP/1.1) and H2Stream (HTTP/2) plug in here.
import SluiceHTTP1
import SluiceIO

/// The outcome of pulling request body bytes from the client toward the pod.
enum RequestBodyPull {
    /// Some bytes (or the end of the body) were handed to `Exchange.forwardRequestBody`/`forwardRequestBodyEnd`.
    case moved
    /// Nothing more is at hand now; the source calls `Exchange.pumpRequestBody()` again when there is.
    case noData
    /// The body is malformed: answer with this error.
    case failed(ErrorResponse)
    /// The client went away (or reset the stream) before its body ended.
    case gone
}

protocol ExchangeDownstream: AnyObject {
    var worker: Worker { get }
    /// The request's exchange toward an HTTP/1.1 pod, while it runs.
    var exchange: Exchange? { get set }
    /// The client's address as text, for X-Forwarded-For.
    var peerIP: [UInt8] { get }
    /// The client reached us over TLS (X-Forwarded-Proto: https).
    var isTLS: Bool { get }
    /// The request's X-Request-Id (the client's, or one the exchange makes); storage may be reused between exchanges.
    var requestId: [UInt8] { get set }

    func setDeadline(_ kind: DeadlineKind, after milliseconds: Int)
    /// The one timer of this downstream (the sweep compares it with the loop's clock) and what it stands for.
    var deadline: Int64 { get set }
    var deadlineKind: DeadlineKind { get set }

    // MARK: Request body source

    /// Moves request body bytes at hand into `out` through `exchange.forwardRequestBody` (one piece per call is enough).
    func pullRequestBody(for exchange: Exchange, into out: ByteBuffer) -> RequestBodyPull

    /// Everything pulled so far has been written to the pod's socket (HTTP/2 grants window only now).
    func upstreamTookRequestBytes()

    // MARK: Response sink

    /// The pod's final response head; `base` is where its spans point. The exchange has set its body state already.
    func writeResponseHead(_ head: ResponseHead, base: UnsafeRawPointer, for exchange: Exchange)
    /// Body bytes, already stripped of the pod's framing.
    func writeResponseBody(_ bytes: UnsafeRawBufferPointer)
    /// The response body is complete (called once, before `exchangeFinished`).
    func endResponseBody()
    /// Response bytes buffered for the client and not yet sent; above `bufferBytes` the exchange stops reading the pod.
    var responseBufferedBytes: Int { get }
    /// Tries to send what is buffered for the client.
    func flushResponse()

    // MARK: Outcomes

    /// The exchange ended with a complete response.
    func exchangeFinished(closeAfter: Bool)
    /// The exchange failed before any response byte reached the client: answer with a gateway error.
    func failExchange(_ response: ErrorResponse)
    /// The exchange cannot finish (framing broke mid-response, the client left): drop it without an answer;
    /// `flags` say why, for the request's record.
    func abortExchange(_ flags: RequestRecord.Flags)
}

extension ExchangeDownstream {
    /// Arms the downstream's timer `milliseconds` from the loop's clock; 0 or less disarms it.
    func setDeadline(_ kind: DeadlineKind, after milliseconds: Int) {
        if milliseconds <= 0 {
            deadline = .max
            deadlineKind = .none
        } else {
            deadline = worker.loop.now + Int64(milliseconds)
            deadlineKind = kind
        }
    }
}

extension ExchangeDownstream where Self: RequestOwner {
    /// The exchange is over (finished, failed or abandoned): its attempts go into the record, its pod connection
    /// closes unless the exchange pooled it already, and the worker recycles it at the end of the tick.
    func releaseExchange() {
        guard let exchange else { return }
        noteAttempts(of: exchange)
        exchange.abandonUpstream()
        self.exchange = nil
        worker.exchanges.recycle(exchange, loop: worker.loop)
    }
}
