// The software engine's VM: the memory-map source shared by its vCPUs and the
// set of guest-physical pages that hold decoded (cached) code, which the memory
// write path consults so self-modifying code invalidates stale decodes
// (DESIGN.md "decode once and cache ... invalidate on writes to code pages").
// Any thread: is_code_page is a lock-free bitmap read; the vCPU list and the
// cross-vCPU invalidation queues are guarded by m_lock.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "cpu/backend.h"
#include "cpu/memory.h"
#include "cpu/soft/cpuid_msr.h"

namespace anykvm::soft {

class Cpu;

class SoftVm final : public cpu::VmBackend {
 public:
  explicit SoftVm(cpu::MemoryMapSource& m);
  ~SoftVm() override;

  std::unique_ptr<cpu::VcpuBackend> create_vcpu(VcpuId id) override;

  cpu::MemoryMapSource& memory;
  // Host-initiated TSC writes, for kvm_synchronize_tsc's matching (cpuid_msr.h).
  TscSync tsc_sync;

  // Pages above this frame number are never cached as code (decoded every time).
  static constexpr uint64_t k_max_code_pfn = uint64_t(1) << 24;  // 64 GiB

  // Does guest-physical page `pfn` hold decoded instructions of some vCPU?
  // Called by mmu/ on TLB fills (no direct-write tag for code pages) and on
  // slow-path writes. Relaxed: a stale answer is resolved by the block
  // validation at KVM_RUN entry.
  bool is_code_page(uint64_t pfn) const {
    if (pfn >= k_max_code_pfn) return false;
    return (m_code_bits[pfn >> 6].load(std::memory_order_relaxed) >> (pfn & 63)) & 1;
  }
  // A guest write reached code page `pfn` (mmu/ write slow path, phys_ptr):
  // drops the page's decoded blocks in every vCPU; the current vCPU's running
  // block stops after the current instruction.
  // A write of `len` bytes at `gpa` hit page `pfn` (len 0: somewhere in it).
  // With one vCPU, a write that misses every decoded block on the page (data
  // beside code) keeps the blocks and the page's code mark.
  void on_code_write(uint64_t pfn, uint64_t gpa = 0, uint32_t len = 0);

  // ---- engine internals (soft_vcpu.cpp) ----
  // Marks `pfn` as holding code for `owner` (revokes direct-write TLB tags).
  void mark_code_page(Cpu& owner, uint64_t pfn);
  void attach(Cpu* c);
  void detach(Cpu* c);
  // vCPUs of this VM (relaxed): LOCKed instructions need host atomics only with two or more.
  size_t vcpu_count() const { return m_ncpus.load(std::memory_order_relaxed); }

 private:
  std::unique_ptr<std::atomic<uint64_t>[]> m_code_bits;
  std::mutex m_lock;
  std::vector<Cpu*> m_cpus;
  std::atomic<size_t> m_ncpus{0};
};

}  // namespace anykvm::soft
