// MonotonicClock: the host's CLOCK_MONOTONIC, the time base of every device timer.
#include "devices/edges.h"

#include <time.h>

namespace anykvm::devices {

Nanoseconds MonotonicClock::now() const {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return Nanoseconds{int64_t(ts.tv_sec) * k_ns_per_sec + ts.tv_nsec};
}

}  // namespace anykvm::devices
