#pragma once
// The area under the ROC curve of a score that should be higher for the
// positives (anomalies) than for the negatives (normal data):
//
//   AUROC = P(s+ > s-) + 1/2 P(s+ = s-)
//
// over all pairs of a positive and a negative: the Mann-Whitney U statistic
// divided by n+ n- (Hanley & McNeil 1982). Ties count one half, so a
// constant score gives 0.5, a perfect one 1 and a reversed one 0. Computed
// from the ranks (midranks for ties): O(n log n), exact for any n.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "ddpm/core/error.hpp"

namespace examples {

// AUROC of `scores` with `positive[i]` saying whether item i is a positive.
inline double auroc(std::span<const double> scores, std::span<const std::uint8_t> positive) {
  ddpm::require(scores.size() == positive.size(), "auroc: ", scores.size(), " scores but ", positive.size(), " labels");
  for (double s : scores) ddpm::require(std::isfinite(s), "auroc: a score is not finite (", s, ")");
  const std::size_t n = scores.size();
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] < scores[b]; });
  double rank_sum = 0;  // of the positives, ranks 1..n, midranks over ties
  std::size_t pos = 0;
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i;
    while (j < n && scores[order[j]] == scores[order[i]]) ++j;
    const double midrank = 0.5 * static_cast<double>(i + 1 + j);  // mean of ranks i+1 .. j
    for (std::size_t k = i; k < j; ++k)
      if (positive[order[k]]) rank_sum += midrank, ++pos;
    i = j;
  }
  const std::size_t neg = n - pos;
  ddpm::require(pos > 0 && neg > 0, "auroc: needs at least one positive and one negative, got ", pos, " and ", neg);
  const double u = rank_sum - 0.5 * static_cast<double>(pos) * static_cast<double>(pos + 1);
  return u / (static_cast<double>(pos) * static_cast<double>(neg));
}

// AUROC of the scores of the negatives against those of the positives.
inline double auroc(std::span<const double> negatives, std::span<const double> positives) {
  std::vector<double> s(negatives.begin(), negatives.end());
  s.insert(s.end(), positives.begin(), positives.end());
  std::vector<std::uint8_t> label(negatives.size(), 0);
  label.resize(s.size(), 1);
  return auroc(s, label);
}

}  // namespace examples
