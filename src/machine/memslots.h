// Memory slots with Linux's KVM_SET_USER_MEMORY_REGION rules
// (virt/kvm/kvm_main.c __kvm_set_memory_region, Linux 6.1): create, delete by
// size 0, flags-only change, move, overlap -> EEXIST, misalignment -> EINVAL.
// Every change publishes a new cpu::MemoryMap snapshot for the engine.
// Any thread: guarded by m_lock. Leaves out: address space 1 is stored but no
// engine uses it (no SMM).
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "base/result.h"
#include "base/types.h"
#include "cpu/memory.h"

namespace anykvm::machine {

struct MemoryRegionRequest {  // struct kvm_userspace_memory_region, unpacked
  uint32_t slot = 0;            // id | (as_id << 16)
  uint32_t flags = 0;
  uint64_t guest_phys_addr = 0;
  uint64_t memory_size = 0;
  uint64_t userspace_addr = 0;
};

enum MemFlag : uint32_t { k_mem_log_dirty_pages = 1u << 0, k_mem_readonly = 1u << 1 };

constexpr uint32_t k_user_mem_slots = 32764;  // KVM_USER_MEM_SLOTS on x86 (6.1)
constexpr uint32_t k_address_spaces = 2;      // KVM_ADDRESS_SPACE_NUM on x86

class MemSlots {
 public:
  explicit MemSlots(cpu::MemoryMapSource& source) : m_source(source) {}

  Result<void> set(const MemoryRegionRequest& r);
  // KVM_GET_DIRTY_LOG: copies the slot's bitmap (ALIGN(npages, 64) / 8 bytes)
  // into `out` and clears it. ENOENT: no such slot or no dirty logging.
  Result<void> take_dirty_log(uint32_t slot, std::vector<uint64_t>& out);

 private:
  struct Slot {
    uint64_t gpa = 0, size = 0, uaddr = 0;
    uint32_t flags = 0;
    std::shared_ptr<std::atomic<uint64_t>[]> dirty;  // shared with published maps
    size_t dirty_words = 0;
  };
  void publish_locked();

  cpu::MemoryMapSource& m_source;
  std::mutex m_lock;
  std::map<uint32_t, Slot> m_slots[k_address_spaces];  // by slot id
  // Keeps dirty bitmaps alive while any published snapshot may point at them.
  std::vector<std::shared_ptr<std::atomic<uint64_t>[]>> m_retired;
};

}  // namespace anykvm::machine
