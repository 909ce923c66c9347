// Control layer: the HTTP/1.1 health check of plain and https:// endpoints — GET the readiness path, ready on 200
// (what KServe's model server answers on /v1/models/NAME and /v2/health/ready once the model is loaded).
import SluiceIO

enum HTTPProbe {
    /// nil when the pod answered 200 on `path`, else why not.
    static func check(_ connection: ProbeConnection, path: String) -> String? {
        let request = ByteBuffer(capacity: 256 + path.utf8.count)
        // Connection: close, so the pod does not keep a worker thread for a connection that ends after the answer.
        request.append(Array("GET \(path) HTTP/1.1\r\nHost: \(connection.endpoint.host):\(connection.endpoint.port)\r\nUser-Agent: sluice-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n".utf8))
        do throws(ProbeFailure) {
            try connection.write(request)
            // Only the status line matters: `HTTP/1.1 200 OK\r\n`.
            let answer = ByteBuffer(capacity: 1024)
            while !answer.readable.contains(UInt8(ascii: "\n")) {
                guard answer.writableBytes > 0 else { return "GET \(path): the status line is too long" }
                guard try connection.read(into: answer) else {
                    return answer.readableBytes == 0 ? "GET \(path): the pod closed the connection without answering"
                                                     : "GET \(path): the pod closed the connection mid status line"
                }
            }
            guard let status = statusCode(answer.readable) else { return "GET \(path): not an HTTP/1.x answer" }
            return status == 200 ? nil : "GET \(path) answered \(status)"
        } catch {
            return "GET \(path): \(error.description)"
        }
    }

    /// The status code of an `HTTP/1.x NNN` status line (RFC 9112 §4).
    static func statusCode(_ bytes: UnsafeRawBufferPointer) -> Int? {
        let prefix = Array("HTTP/1.".utf8)
        guard bytes.count >= 12, Array(bytes[0..<7]) == prefix, bytes[8] == UInt8(ascii: " ") else { return nil }
        var status = 0
        for byte in bytes[9..<12] {
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
            status = status * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return status
    }
}
