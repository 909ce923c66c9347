// Fuzzing (Tests/Fuzz): the libFuzzer executable for the chunked decoder (ChunkedDecoderCheck); `make fuzz` builds and runs it.
// The per-input check lives in SluiceFuzzChecks, shared with the corpus replay test.
import SluiceFuzzChecks

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    fuzzOne(data, count, ChunkedDecoderCheck.check)
}

@main
struct FuzzChunked {
    static func main() {
        #if FUZZING
        FuzzDriver.run(fuzzInput)
        #else
        print("FuzzChunked is a libFuzzer target: build and run it with `make fuzz` (-DFUZZING -sanitize=fuzzer,address).")
        #endif
    }
}
