// Fuzzing (Tests/Fuzz): the libFuzzer executable for the HTTP/1.1 response parser and the response body path (ResponseParserCheck); `make fuzz` builds and runs it.
// The per-input check lives in SluiceFuzzChecks, shared with the corpus replay test.
import SluiceFuzzChecks

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    fuzzOne(data, count, ResponseParserCheck.check)
}

@main
struct FuzzH1Response {
    static func main() {
        #if FUZZING
        FuzzDriver.run(fuzzInput)
        #else
        print("FuzzH1Response is a libFuzzer target: build and run it with `make fuzz` (-DFUZZING -sanitize=fuzzer,address).")
        #endif
    }
}
