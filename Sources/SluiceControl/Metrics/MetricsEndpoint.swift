// Control layer: GET /metrics — the writers of every metric family, called in order into one exposition in the
// format the scraper's Accept asks for — on the admin listener and on the optional metrics-only listener.
import SluiceBlockingHTTP
import SluiceProxy

public struct MetricsEndpoint: Sendable {
    /// One part of the scrape: the process, the control plane, the data plane's workers, …
    public typealias Writer = @Sendable (inout MetricsExposition) -> Void

    public var writers: [Writer]

    public init(writers: [Writer]) {
        self.writers = writers
    }

    /// The scrape, Prometheus 0.0.4 text or OpenMetrics by `accept`, streamed: written to the socket in 256 KiB
    /// chunks as the families are produced, so that a scrape of 1 000 revisions (tens of MB with Istio's
    /// families) never holds the whole text — one buffer of it costs more in page faults and copies than the
    /// writing itself (benchmarks/scrape.sh).
    public func scrape(accept: String?) -> BlockingResponse {
        let format = MetricsExposition.Format.negotiate(accept: accept)
        let writers = self.writers
        return BlockingResponse(status: 200, headers: [("Content-Type", format.contentType)]) { emit in
            // The writer lives only inside this call, and so does its use of `emit`.
            withoutActuallyEscaping(emit) { emit in
                var exposition = MetricsExposition(format: format, chunkBytes: 256 * 1024) { _ = emit($0) }
                for write in writers { write(&exposition) }
                exposition.finishWithoutCopy()
            }
        }
    }

    /// The admin API's /metrics (its token already checked) and the metrics-only listener's one route.
    public func respond(to request: BlockingRequest) -> BlockingResponse {
        guard request.method == "GET" else {
            return BlockingResponse(status: 405, headers: [("Allow", "GET"), ("Content-Type", "text/plain; charset=utf-8")],
                                    body: Array("405 method not allowed: /metrics answers GET\n".utf8))
        }
        return scrape(accept: request.header("Accept"))
    }

    /// The metrics-only listener (`metrics.listen`): GET /metrics and nothing else, no token (metrics change nothing
    /// and carry no secrets; Prometheus scrapes a port of its own).
    public func handleMetricsOnly(_ request: BlockingRequest) -> BlockingResponse {
        guard request.path == "/metrics" else {
            return BlockingResponse(status: 404, headers: [("Content-Type", "text/plain; charset=utf-8")],
                                    body: Array("404 not found: this listener serves only GET /metrics\n".utf8))
        }
        return respond(to: request)
    }
}
