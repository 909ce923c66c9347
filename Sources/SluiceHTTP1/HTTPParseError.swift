// HTTPParseError and ParseStatus: how the protocol layer reports a verdict. Protocol layer (SluiceHTTP1).
// Reasons are static literals named like Envoy's response-code details so access logs read alike.

/// A rejected message: `status` is what the proxy answers (4xx/5xx for requests, 502 for upstream
/// responses), `reason` an Envoy-style detail for the access log. Reasons are static literals, so
/// building an error never allocates.
public struct HTTPParseError: Error, Equatable, Sendable {
    public var status: Int
    public var reason: String

    public init(status: Int, reason: String) {
        self.status = status
        self.reason = reason
    }
}

/// The result of one `parse` call.
public enum ParseStatus: Equatable, Sendable {
    /// More bytes are needed; call again with the same start and a longer buffer.
    case incomplete
    /// The head is complete; read `head`.
    case complete
    /// The message is invalid; the connection must not be reused.
    case failed(HTTPParseError)
}

/// Which side of the proxy a head came from: decides the status of an error.
/// A bad request is the client's fault (400 and friends); a bad upstream response is answered with 502
/// (RFC 9112 §6.3 item 5: discard it, close the upstream connection).
enum Peer: Sendable {
    case downstream
    case upstream

    func error(_ status: Int, _ reason: String) -> HTTPParseError {
        switch self {
        case .downstream: return HTTPParseError(status: status, reason: reason)
        case .upstream: return HTTPParseError(status: 502, reason: reason)
        }
    }
}

/// The reasons, in one place so tests and logs agree on spelling.
public enum HTTPParseReason {
    public static let invalidCharacters = "http1.invalid_characters"
    public static let invalidMethod = "http1.invalid_method"
    public static let unknownMethod = "http1.unknown_method"
    public static let connectNotSupported = "http1.connect_not_supported"
    public static let invalidURL = "http1.invalid_url"
    public static let invalidScheme = "http1.invalid_scheme"
    public static let urlTooLong = "http1.url_too_long"
    public static let invalidVersion = "http1.invalid_version"
    public static let unsupportedVersion = "http1.unsupported_version"
    public static let invalidStatus = "http1.invalid_status"
    public static let bareLF = "http1.bare_lf"
    public static let bareCR = "http1.bare_cr"
    public static let obsFold = "http1.obs_fold"
    public static let whitespaceBeforeColon = "http1.whitespace_before_colon"
    public static let emptyHeaderName = "http1.empty_header_name"
    public static let missingColon = "http1.missing_colon"
    public static let headersTooLarge = "http1.headers_too_large"
    public static let tooManyHeaders = "http1.too_many_headers"
    public static let missingHost = "http1.missing_host_header"
    public static let duplicateHost = "http1.duplicate_host_header"
    public static let invalidHost = "http1.invalid_host"
    public static let invalidContentLength = "http1.invalid_content_length"
    public static let contentLengthAndChunked = "http1.content_length_and_chunked_not_allowed"
    public static let invalidTransferEncoding = "http1.invalid_transfer_encoding"
    public static let transferEncodingNotAllowed = "http1.transfer_encoding_not_allowed"
    public static let unknownTransferEncoding = "http1.unknown_transfer_encoding"
    public static let invalidConnection = "http1.invalid_connection_header"
    public static let expectationFailed = "http1.expectation_failed"
    public static let invalidChunkSize = "http1.invalid_chunk_size"
    public static let chunkSizeOverflow = "http1.chunk_size_overflow"
    public static let invalidChunkExtension = "http1.invalid_chunk_extension"
    public static let chunkLineTooLong = "http1.chunk_line_too_long"
    public static let missingChunkCRLF = "http1.missing_chunk_crlf"
    public static let trailersTooLarge = "http1.trailers_too_large"
}
