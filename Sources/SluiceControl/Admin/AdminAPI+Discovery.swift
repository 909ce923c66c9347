// Control layer: the admin API's discovery documents — /version, /api, /api/v1, /apis and the serving.kserve.io group
// (and aggregated discovery when the Accept header asks for it) — so that kubectl finds InferenceServices.
import Foundation
import SluiceBlockingHTTP

extension AdminAPI {
    /// The answer for a discovery path; nil for any other path.
    func discovery(_ request: BlockingRequest) -> BlockingResponse? {
        nil
    }
}
