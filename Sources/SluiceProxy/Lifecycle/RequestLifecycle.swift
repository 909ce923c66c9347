// Proxy layer: the life of a request — its phases in order, where each one runs, and the one finish that every
// request passes through exactly once, whatever the client speaks and however it ends. Read this file first.
//
// The same phases run for HTTP/1.1 (DownstreamConnection), HTTP/2 → HTTP/1.1 (H2Stream + Exchange) and gRPC →
// HTTP/2 (H2Stream + H2UpstreamStream):
//
//  1. Request head   the head arrives and is parsed: RequestParser (HTTP/1.1, DownstreamConnection.advance) or
//                    nghttp2 (H2Stream.addHeader / headersComplete). The record opens at the first byte (HTTP/1.1)
//                    or when the stream opens (HTTP/2); method, authority and path are copied into it.
//  2. Route          host → service → revision (weighted pick, tag host, or tag header): Worker.route
//                    (Worker+Routing.swift). A request that cannot be routed is answered here (404/503/501).
//  3. Policy         RequestPolicy: the timeouts and limits the request runs under, resolved once — when the
//                    HTTP/1.1 request is routed, when the HTTP/2 stream opens — so a hand-over mid-request changes
//                    neither its routes nor its limits.
//  4. Endpoint       power of two choices on outstanding requests among the revision's endpoints
//                    (Worker.pickEndpoint).
//  5. Connect/reuse  an idle pooled connection or a new one (ConnectionPool.acquire, UpstreamDial): the first
//                    `UpstreamAttempt` of the Exchange (for gRPC: a call on a multiplexed pod connection). A failed
//                    attempt that the pod never answered, with every request byte still in its `ReplayBuffer`, is
//                    followed by another (Exchange.startNextAttempt; H2Stream.grpcUpstreamFailed).
//  6. Send           the request head re-serialised by one forwarded-headers policy (ForwardedHeaders.swift), then
//                    the body with backpressure both ways (Exchange.begin / pumpRequestBody; H2Stream.startGRPC).
//  7. Response head  parsed and relayed in the client's protocol (Exchange.startResponse → writeResponseHead;
//                    H2Stream.grpcResponseHead).
//  8. Relay          the response body (Exchange.pumpResponse; H2Stream.readResponseBody), trailers for gRPC.
//  9. Finish         `RequestOwner.finishRequest`: the record gets its outcome, status, flags and end time and goes
//                    to `Worker.finish`, the single place where metrics, access logs and traces plug in.
//
// Every way out reaches finish once: a complete response (.completed), a gateway-made answer — no route, no
// endpoint, connect failure, timeouts, limits, malformed input — (.gatewayAnswered, through the one
// respondLocally of each protocol), and every abort: the client leaving or resetting, the pod breaking off
// mid-response, a body timeout, the drain deadline (.aborted). `isRequestOpen` makes a second call a no-op, and
// the lifecycle tests assert one record per request.
import SluiceIO

/// Called on the worker's thread with each finished request (tests; later the metrics and access log).
public typealias RequestObserver = @Sendable (RequestRecord) -> Void

/// The owner of one request at a time (an HTTP/1.1 connection, an HTTP/2 stream): holds its record.
protocol RequestOwner: AnyObject {
    var worker: Worker { get }
    var record: RequestRecord { get set }
    /// A record is open: the request started and has not finished.
    var isRequestOpen: Bool { get set }
    /// The record was handed to finish: storage lent for it (an idle HTTP/1.1 connection keeps none) can go back.
    func recordFinished()
}

/// A request record's storage lent by the worker to an HTTP/1.1 connection while a request runs, so that idle
/// keep-alive connections do not each carry one (10 000 of them must stay cheap).
final class RequestRecordBox {
    var record = RequestRecord()
}

extension RequestOwner {
    /// Phase 1: a new request starts.
    func openRequest(_ clientProtocol: RequestRecord.ClientProtocol, isTLS: Bool, client peerIP: [UInt8]) {
        record.open(clientProtocol, isTLS: isTLS, now: MonotonicClock.nanoseconds())
        record.clientAddress.set(peerIP)
        isRequestOpen = true
    }

    /// Phase 9: the one finish. `status` is what the client got, when the record does not say it already (the
    /// pod's status, set as its head was relayed); a second call does nothing.
    func finishRequest(_ outcome: RequestRecord.Outcome, status: Int? = nil, flags: RequestRecord.Flags = []) {
        guard isRequestOpen else { return }
        isRequestOpen = false
        let isDraining = worker.isDraining
        // One access to the record for all of it, and the worker reads it in place: no copy of the record.
        record.close(outcome, status: status, flags: flags, isDraining: isDraining, now: MonotonicClock.nanoseconds())
        worker.finish(&record)
        recordFinished()
    }

    /// A gateway-made answer: the status and the reason's flags.
    func finishRequest(answered response: ErrorResponse) {
        record.gatewayAnswer = response.answer
        finishRequest(.gatewayAnswered, status: response.status, flags: response.answer.flags)
    }

    /// What the exchange's attempts did (endpoint, timestamps, counts), copied before the exchange goes away.
    func noteAttempts(of exchange: Exchange) {
        record.attempts = exchange.attemptCount
        if record.revision !== exchange.revision {  // a retry moved it to another revision
            record.noteRoute(revision: exchange.revision, tag: exchange.tag)
        }
        record.endpoint = exchange.pool.endpoint
        record.upstreamConnectedNs = exchange.upstreamConnectedNs
        if record.firstResponseByteNs == 0 { record.firstResponseByteNs = exchange.firstResponseByteNs }
        record.requestBodyBytes = exchange.requestBodyBytes
    }
}

extension Worker {
    /// Every finished request, once: the hook of metrics, access logs and traces.
    func finish(_ record: inout RequestRecord) {
        traceFinished(&record)  // first: gives every record its trace id (Telemetry/SpanQueue.swift)
        metrics.record(&record)
        accessLog?.log(record, format: settings.accessLog.format, sampleRate: settings.accessLog.sampleRate, errorsOnly: settings.accessLog.errorsOnly, random: &random)
        requestObserver?(record)
    }

    func takeRecordBox() -> RequestRecordBox {
        recordBoxes.popLast() ?? RequestRecordBox()
    }

    func giveRecordBox(_ box: RequestRecordBox) {
        if recordBoxes.count < 1024 { recordBoxes.append(box) }
    }
}
