// Control layer: the gRPC health check of h2c:// and h2:// endpoints over HTTP/2 (SluiceHTTP2's client session on a
// probe connection): `grpc.health.v1.Health/Check` with service "" (grpc/grpc doc/health-checking.md), ready on
// SERVING; a pod that does not implement it (UNIMPLEMENTED — KServe's Python model server registers only
// `inference.GRPCInferenceService`) is asked KServe V2's `ModelReady` for the model instead.
import SluiceHTTP2
import SluiceIO

enum GRPCHealthProbe {
    static let healthPath = "/grpc.health.v1.Health/Check"
    static let modelReadyPath = "/inference.GRPCInferenceService/ModelReady"

    /// nil when the pod is SERVING (or, without the health service, says the model is ready), else why not.
    static func check(_ connection: ProbeConnection, modelName: String) -> String? {
        let call = GRPCCall(connection)
        do throws(ProbeFailure) {
            // HealthCheckRequest{service: ""}: an empty message (proto3 leaves default fields out).
            let health = try call.unary(healthPath, message: [])
            switch health.grpcStatus {
            case 0:
                // HealthCheckResponse{status = 1: ServingStatus}; UNKNOWN (0) is left out on the wire.
                let status = ProtoReader.varint(field: 1, in: health.message) ?? 0
                return status == 1 ? nil : "\(healthPath) answered \(servingStatusName(status))"
            case 12:
                // UNIMPLEMENTED: ModelReadyRequest{name = 1}; ModelReadyResponse{ready = 1: bool}.
                var request: [UInt8] = [0x0A]
                ProtoReader.appendVarint(UInt64(modelName.utf8.count), to: &request)
                request += Array(modelName.utf8)
                let ready = try call.unary(modelReadyPath, message: request)
                guard ready.grpcStatus == 0 else {
                    return "\(healthPath) is not implemented and \(modelReadyPath) answered grpc-status \(ready.grpcStatus)\(ready.grpcMessage.map { " (\($0))" } ?? "")"
                }
                return ProtoReader.varint(field: 1, in: ready.message) == 1 ? nil : "\(modelReadyPath): model \(modelName) is not ready"
            default:
                return "\(healthPath) answered grpc-status \(health.grpcStatus)\(health.grpcMessage.map { " (\($0))" } ?? "")"
            }
        } catch {
            return "gRPC health check: \(error.description)"
        }
    }

    static func servingStatusName(_ status: UInt64) -> String {
        switch status {
        case 0: return "UNKNOWN"
        case 2: return "NOT_SERVING"
        case 3: return "SERVICE_UNKNOWN"
        default: return "status \(status)"
        }
    }
}

/// Unary gRPC calls, one after the other, on one HTTP/2 connection.
private final class GRPCCall: H2ClientSessionDelegate {
    struct Answer {
        var grpcStatus: Int
        var grpcMessage: String?
        /// The first message, without its 5-byte prefix.
        var message: [UInt8]
    }

    private let connection: ProbeConnection
    private var session: H2ClientSession!
    private let output = ByteBuffer(capacity: 16 * 1024)
    private let input = ByteBuffer(capacity: 64 * 1024)
    private var streamId: Int32 = -1
    private var body: [UInt8] = []
    private var bodySent = 0
    private var httpStatus: String?
    private var grpcStatus: String?
    private var grpcMessage: String?
    private var data: [UInt8] = []
    private var closedCode: UInt32?
    private var isGoingAway = false

    init(_ connection: ProbeConnection) {
        self.connection = connection
        // unowned(unsafe) in the session: this call owns it and outlives it (it is freed only with this object).
        session = H2ClientSession(delegate: self)
    }

    func unary(_ path: String, message: [UInt8]) throws(ProbeFailure) -> Answer {
        guard !isGoingAway else { throw ProbeFailure("the pod sent GOAWAY") }
        httpStatus = nil
        grpcStatus = nil
        grpcMessage = nil
        data = []
        closedCode = nil
        // gRPC's Length-Prefixed-Message: a compressed flag (0) and the length, 4 bytes big-endian (PROTOCOL-HTTP2.md).
        let count = UInt32(message.count)
        body = [0, UInt8(count >> 24), UInt8((count >> 16) & 0xFF), UInt8((count >> 8) & 0xFF), UInt8(count & 0xFF)] + message
        bodySent = 0
        let scheme = connection.endpoint.upstreamProtocol == .h2 ? "https" : "http"
        let authority = connection.endpoint.host.contains(":") ? "[\(connection.endpoint.host)]:\(connection.endpoint.port)"
                                                               : "\(connection.endpoint.host):\(connection.endpoint.port)"
        let fields = [(":method", "POST"), (":scheme", scheme), (":path", path), (":authority", authority),
                      ("content-type", "application/grpc"), ("te", "trailers"), ("user-agent", "sluice-health-check")]
        streamId = submit(fields)
        guard streamId > 0 else { throw ProbeFailure("cannot start an HTTP/2 stream (\(streamId))") }
        while closedCode == nil {
            guard session.send(into: output, limit: output.capacity) else { throw ProbeFailure("HTTP/2 session error") }
            if output.readableBytes > 0 {
                try connection.write(output)
                output.clear()
                continue
            }
            input.clear()
            guard try connection.read(into: input) else { throw ProbeFailure("the pod closed the connection before answering") }
            guard session.receive(input.readable) else { throw ProbeFailure("the pod broke HTTP/2") }
        }
        guard closedCode == 0 else { throw ProbeFailure("the pod reset the stream (HTTP/2 error \(closedCode!))") }
        guard httpStatus == "200" else { throw ProbeFailure("HTTP status \(httpStatus ?? "none") on \(path)") }
        guard let text = grpcStatus, let status = Int(text) else { throw ProbeFailure("no grpc-status on \(path)") }
        let message = data.count >= 5 ? Array(data[5...]) : []
        return Answer(grpcStatus: status, grpcMessage: grpcMessage, message: message)
    }

    /// Submits the request head; the field buffers live for the call, which is all nghttp2 needs (it copies them).
    private func submit(_ fields: [(String, String)]) -> Int32 {
        var storage: [UInt8] = []
        var ranges: [(Range<Int>, Range<Int>)] = []
        for (name, value) in fields {
            let nameStart = storage.count
            storage += Array(name.utf8)
            let valueStart = storage.count
            storage += Array(value.utf8)
            ranges.append((nameStart..<valueStart, valueStart..<storage.count))
        }
        return storage.withUnsafeBytes { bytes in
            let pairs = ranges.map { (UnsafeRawBufferPointer(rebasing: bytes[$0.0]), UnsafeRawBufferPointer(rebasing: bytes[$0.1])) }
            return session.submitRequest(pairs, hasBody: true)
        }
    }

    // MARK: H2ClientSessionDelegate

    func h2cHeader(_ streamId: Int32, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, isTrailer: Bool) {
        guard streamId == self.streamId else { return }
        let name = String(decoding: name, as: UTF8.self)
        let value = String(decoding: value, as: UTF8.self)
        switch name {
        case ":status": httpStatus = value
        case "grpc-status": grpcStatus = value  // in the trailers, or in the headers of a trailers-only answer
        case "grpc-message": grpcMessage = value
        default: break
        }
    }

    func h2cHeadersComplete(_ streamId: Int32, isTrailer: Bool, endStream: Bool) {}

    func h2cData(_ streamId: Int32, _ bytes: UnsafeRawBufferPointer) {
        guard streamId == self.streamId else { return }
        // A health answer is a few bytes; anything past 64 KiB is not one and is not kept.
        if data.count < 65_536 { data += bytes.prefix(65_536 - data.count) }
        session.consume(streamId, bytes.count)
    }

    func h2cDataEnded(_ streamId: Int32) {}

    func h2cStreamClosed(_ streamId: Int32, errorCode: UInt32) {
        if streamId == self.streamId { closedCode = errorCode }
    }

    func h2cReadRequestBody(_ streamId: Int32, into buffer: UnsafeMutableRawBufferPointer) -> (count: Int, isEnd: Bool)? {
        let n = min(buffer.count, body.count - bodySent)
        body.withUnsafeBytes { bytes in
            if n > 0 { buffer.baseAddress!.copyMemory(from: bytes.baseAddress! + bodySent, byteCount: n) }
        }
        bodySent += n
        return (n, bodySent == body.count)
    }

    func h2cGoAway() { isGoingAway = true }
}

/// Just enough protobuf (protobuf.dev/programming-guides/encoding) to read one varint field of a health answer.
enum ProtoReader {
    /// The last value of varint field `field` in `message` (the last one wins, as for any proto3 scalar).
    static func varint(field: Int, in message: [UInt8]) -> UInt64? {
        var index = 0
        var found: UInt64?
        while index < message.count {
            guard let key = readVarint(message, &index) else { return found }
            let number = Int(key >> 3)
            switch key & 7 {
            case 0:
                guard let value = readVarint(message, &index) else { return found }
                if number == field { found = value }
            case 1: index += 8
            case 2:
                guard let length = readVarint(message, &index), length <= UInt64(message.count - index) else { return found }
                index += Int(length)
            case 5: index += 4
            default: return found  // groups (3, 4) and reserved types: nothing a health answer holds
            }
        }
        return found
    }

    static func appendVarint(_ value: UInt64, to bytes: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    private static func readVarint(_ bytes: [UInt8], _ index: inout Int) -> UInt64? {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while index < bytes.count && shift < 64 {
            let byte = bytes[index]
            index += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
        return nil
    }
}
