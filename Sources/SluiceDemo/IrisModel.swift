// The demo iris classifier: two honest models trained in-process on the embedded Fisher data set.
// Part of SluiceDemo, which stands in for KServe model servers; two versions exist so canary traffic is visible.
//
// The versions disagree on some plausible flowers, which is the point: a test can tell which answered.
// Example: [6.3, 2.8, 5.1, 1.5] (row 134 of the data, a virginica) → v1 answers 1 (versicolor), v2 answers 2.
// Both answer [1, 1] for KServe's sklearn example input [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]].

public struct IrisModel: Sendable {
    public enum Version: Int, Sendable, CaseIterable {
        /// Nearest centroid on all four features, each scaled by the pooled within-class standard deviation.
        case v1 = 1
        /// One nearest neighbour (Euclidean, raw centimetres) over all 150 training rows.
        case v2 = 2
    }

    public static let featureCount = 4

    public let version: Version
    // v1 state: one centroid per class and the per-feature scale. Plain Euclidean nearest centroid on raw
    // centimetres answers 2 for the first example row, unlike sklearn; scaling by within-class spread fixes
    // that and lifts training accuracy from 92.7 % to 96 %, so it is the more honest baseline anyway.
    let centroids: [[Double]]
    let scales: [Double]
    // v2 state: the training set itself.
    let samples: [(features: [Double], label: Int)]

    public init(version: Version) {
        self.version = version
        let samples = Self.trainingRows.map { (features: [$0.0, $0.1, $0.2, $0.3], label: $0.4) }
        self.samples = samples
        let classCount = (samples.map(\.label).max() ?? -1) + 1
        var sums = Array(repeating: Array(repeating: 0.0, count: Self.featureCount), count: classCount)
        var counts = Array(repeating: 0, count: classCount)
        for sample in samples {
            counts[sample.label] += 1
            for feature in 0..<Self.featureCount { sums[sample.label][feature] += sample.features[feature] }
        }
        let centroids = (0..<classCount).map { label in sums[label].map { $0 / Double(max(counts[label], 1)) } }
        var squaredDeviations = Array(repeating: 0.0, count: Self.featureCount)
        for sample in samples {
            for feature in 0..<Self.featureCount {
                let deviation = sample.features[feature] - centroids[sample.label][feature]
                squaredDeviations[feature] += deviation * deviation
            }
        }
        self.centroids = centroids
        // A zero spread would divide by zero; 1 leaves such a (degenerate) feature unscaled.
        self.scales = squaredDeviations.map { total in
            let deviation = (total / Double(max(samples.count, 1))).squareRoot()
            return deviation > 0 ? deviation : 1
        }
    }

    /// One class (0 setosa, 1 versicolor, 2 virginica) per row; each row must hold `featureCount` values.
    public func predict(_ rows: [[Double]]) -> [Int] {
        rows.map { row in
            precondition(row.count == Self.featureCount, "callers validate the shape before predicting")
            switch version {
            case .v1: return nearestCentroid(row)
            case .v2: return nearestNeighbour(row)
            }
        }
    }

    func nearestCentroid(_ row: [Double]) -> Int {
        var best = (label: 0, distance: Double.infinity)
        for (label, centroid) in centroids.enumerated() {
            var distance = 0.0
            for feature in 0..<Self.featureCount {
                let delta = (row[feature] - centroid[feature]) / scales[feature]
                distance += delta * delta
            }
            if distance < best.distance { best = (label, distance) }
        }
        return best.label
    }

    // Ties go to the earliest training row, so answers are deterministic.
    func nearestNeighbour(_ row: [Double]) -> Int {
        var best = (label: 0, distance: Double.infinity)
        for sample in samples {
            var distance = 0.0
            for feature in 0..<Self.featureCount {
                let delta = row[feature] - sample.features[feature]
                distance += delta * delta
            }
            if distance < best.distance { best = (sample.label, distance) }
        }
        return best.label
    }
}
