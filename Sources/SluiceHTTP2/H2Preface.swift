// Protocol layer (SluiceHTTP2): the client connection preface (RFC 9113 §3.4), for h2c by prior knowledge.

public enum H2Preface {
    public enum Match { case complete, partial, mismatch }

    static let bytes: StaticString = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

    /// Whether `received` starts with the preface, could still (too few bytes), or cannot.
    public static func match(_ received: UnsafeRawBufferPointer) -> Match {
        let preface = bytes.utf8Start
        let n = min(received.count, bytes.utf8CodeUnitCount)
        for i in 0..<n where received[i] != preface[i] { return .mismatch }
        return n == bytes.utf8CodeUnitCount ? .complete : .partial
    }
}
