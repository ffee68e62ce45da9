// The guest-physical memory map an engine sees: an immutable snapshot of the
// VM's memslots, published by machine/ and swapped atomically. An engine caches
// translations (TLB, decoded code) and must drop them when `generation` changes;
// it checks at every block boundary and on every KVM_RUN entry (DESIGN.md:
// "the guest can reach only its memslots").
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "base/types.h"

namespace anykvm::cpu {

struct RamRegion {
  Gpa start;
  uint64_t size = 0;   // bytes, multiple of 4096
  uint8_t* hva = nullptr;
  bool readonly = false;  // KVM_MEM_READONLY: writes exit as MMIO
  // KVM_MEM_LOG_DIRTY_PAGES: one bit per page, set with an atomic OR on the first
  // write through a fresh translation. nullptr when not logging.
  std::atomic<uint64_t>* dirty_bitmap = nullptr;
};

// Sorted by start, non-overlapping. Immutable once published.
struct MemoryMap {
  std::vector<RamRegion> regions;

  const RamRegion* find(Gpa gpa) const {
    size_t lo = 0, hi = regions.size();
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      const RamRegion& r = regions[mid];
      if (gpa.raw() < r.start.raw()) hi = mid;
      else if (gpa.raw() - r.start.raw() >= r.size) lo = mid + 1;
      else return &r;
    }
    return nullptr;
  }
};

// Owned by machine/ (one per VM). Any thread may publish; vCPU threads read.
class MemoryMapSource {
 public:
  // Acquire load; the snapshot stays valid while the shared_ptr is held.
  std::shared_ptr<const MemoryMap> snapshot() const { return m_map.load(std::memory_order_acquire); }
  // Bumped (release) after each publish and whenever cached write permissions
  // must be revoked (KVM_GET_DIRTY_LOG resets dirty tracking).
  uint64_t generation() const { return m_generation.load(std::memory_order_acquire); }
  // The counter itself, for generated code that polls it (cpu/soft/jit).
  const std::atomic<uint64_t>* generation_word() const { return &m_generation; }

  void publish(std::shared_ptr<const MemoryMap> map) {
    m_map.store(std::move(map), std::memory_order_release);
    bump();
  }
  void bump() { m_generation.fetch_add(1, std::memory_order_acq_rel); }

 private:
  std::atomic<std::shared_ptr<const MemoryMap>> m_map{std::make_shared<const MemoryMap>()};
  std::atomic<uint64_t> m_generation{1};
};

}  // namespace anykvm::cpu
