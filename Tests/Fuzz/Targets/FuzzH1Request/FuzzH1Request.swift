// Fuzzing (Tests/Fuzz): the libFuzzer executable for the HTTP/1.1 request parser and the request body path (RequestParserCheck); `make fuzz` builds and runs it.
// The per-input check lives in SluiceFuzzChecks, shared with the corpus replay test.
import SluiceFuzzChecks

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    fuzzOne(data, count, RequestParserCheck.check)
}

@main
struct FuzzH1Request {
    static func main() {
        #if FUZZING
        FuzzDriver.run(fuzzInput)
        #else
        print("FuzzH1Request is a libFuzzer target: build and run it with `make fuzz` (-DFUZZING -sanitize=fuzzer,address).")
        #endif
    }
}
