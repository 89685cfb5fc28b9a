#pragma once
// A one-line progress bar on stderr for the examples:
//
//   examples::Progress bar("train", total_steps);
//   for (...) { ...; bar.update(step + 1, loss); }
//   bar.finish();
//
// shows  train  [#######.......]  700/2000  loss 0.0412  3.1 it/s  ETA 7m00s
// On a terminal the line is redrawn in place (at most 10 times a second);
// when stderr is a file or a pipe (a log), one line is written every
// `log_every` seconds instead, so logs stay readable.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

namespace examples {

inline std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--";
  const auto s = static_cast<long long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, (s / 60) % 60);
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%llds", s);
  return buf;
}

class Progress {
 public:
  using clock = std::chrono::steady_clock;

  // `first` is where a resumed run starts (its rate counts only new steps).
  Progress(std::string label, std::int64_t total, std::int64_t first = 0, double log_every = 10.0)
      : label_(std::move(label)), total_(std::max<std::int64_t>(total, 1)), first_(first), log_every_(log_every),
        tty_(isatty(fileno(stderr)) != 0), start_(clock::now()), last_draw_(start_) {}

  // `done` steps of `total` are finished; `loss` < 0 hides the loss.
  void update(std::int64_t done, double loss = -1.0, const std::string& extra = {}) {
    done_ = done;
    const auto now = clock::now();
    const double since = std::chrono::duration<double>(now - last_draw_).count();
    const bool last = done >= total_;
    if (!last && since < (tty_ ? 0.1 : log_every_)) return;
    last_draw_ = now;
    draw(done, loss, extra, now);
  }

  // A new total, once it is known (a time-limited run fits its step count).
  void set_total(std::int64_t total) { total_ = std::max<std::int64_t>(total, 1); }

  // Ends the line and returns the elapsed seconds.
  double finish() {
    if (tty_ && drawn_) std::fputc('\n', stderr);
    drawn_ = false;
    return elapsed();
  }
  double elapsed() const { return std::chrono::duration<double>(clock::now() - start_).count(); }
  double rate() const {
    const double e = elapsed();
    return e > 0 ? static_cast<double>(done_ - first_) / e : 0.0;
  }

 private:
  void draw(std::int64_t done, double loss, const std::string& extra, clock::time_point now) {
    const double secs = std::chrono::duration<double>(now - start_).count();
    const double rate = secs > 0 ? static_cast<double>(done - first_) / secs : 0.0;
    const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : NAN;
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(kWidth * std::min<double>(1.0, static_cast<double>(done) / total_));
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.append(static_cast<std::size_t>(kWidth - filled), '.');
    char loss_buf[32] = "";
    if (loss >= 0) std::snprintf(loss_buf, sizeof loss_buf, "  loss %.4f", loss);
    char rate_buf[32];
    if (rate >= 1 || rate == 0)
      std::snprintf(rate_buf, sizeof rate_buf, "%.1f it/s", rate);
    else
      std::snprintf(rate_buf, sizeof rate_buf, "%.2f s/it", 1.0 / rate);
    std::fprintf(stderr, "%s%s [%s] %lld/%lld%s  %s  %s %s%s%s", tty_ ? "\r" : "", label_.c_str(), bar.c_str(),
                 static_cast<long long>(done), static_cast<long long>(total_), loss_buf, rate_buf,
                 done >= total_ ? "took" : "ETA", format_duration(done >= total_ ? secs : eta).c_str(),
                 extra.empty() ? "" : "  ", extra.c_str());
    if (tty_)
      std::fputs("\033[K", stderr);  // clear what a longer previous line left
    else
      std::fputc('\n', stderr);
    std::fflush(stderr);
    drawn_ = true;
  }

  std::string label_;
  std::int64_t total_, first_, done_ = 0;
  double log_every_;
  bool tty_;
  bool drawn_ = false;
  clock::time_point start_, last_draw_;
};

}  // namespace examples
