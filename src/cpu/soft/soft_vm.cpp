// SoftVm (soft_vm.h): the code-page bitmap, cross-vCPU invalidation of decoded
// blocks, vCPU creation; and the Cpu constructor with the power-on state KVM
// gives a new vCPU (SDM vol. 3, 9.1.1 table 9-1: real mode at F000:FFF0).
#include "cpu/soft/soft_vm.h"

#include <algorithm>

#include "cpu/soft/cpu.h"
#include "cpu/soft/fpu/fpu.h"
#include "cpu/soft/soft_vcpu.h"

namespace anykvm::soft {

namespace {
constexpr uint8_t k_type_data_rw_accessed = 3, k_type_code_rx_accessed = 0xb;
constexpr uint32_t k_reset_edx = 0x600;  // family 6 signature in EDX after reset
}  // namespace

Cpu::Cpu(SoftVm& v, VcpuId i) : vm(v), id(i), priv(std::make_unique<Private>()) {
  for (int s = 0; s < 6; ++s) {
    Segment& sg = seg[s];
    sg = Segment{};
    sg.limit = 0xffff;
    sg.present = 1;
    sg.s = 1;
    sg.type = s == 1 ? k_type_code_rx_accessed : k_type_data_rw_accessed;
  }
  seg[1].selector = 0xf000;
  seg[1].base = 0xffff0000;
  rip = 0xfff0;
  gpr[2] = k_reset_edx;
  ldtr.limit = 0xffff;
  ldtr.type = 2;
  ldtr.present = 1;
  tr.limit = 0xffff;
  tr.type = 0xb;
  tr.present = 1;
  gdtr.limit = idtr.limit = 0xffff;
  fpu_reset(fpu);
  vm.attach(this);
  tsc_synchronize(*this, 0);  // kvm_arch_vcpu_postcreate: the TSC starts at 0, in step with the others
}

Cpu::~Cpu() { vm.detach(this); }

SoftVm::SoftVm(cpu::MemoryMapSource& m)
    : memory(m), m_code_bits(new std::atomic<uint64_t>[k_max_code_pfn / 64]()) {}

SoftVm::~SoftVm() = default;

std::unique_ptr<cpu::VcpuBackend> SoftVm::create_vcpu(VcpuId id) { return std::make_unique<SoftVcpu>(*this, id); }

void SoftVm::attach(Cpu* c) {
  std::lock_guard<std::mutex> g(m_lock);
  m_cpus.push_back(c);
  m_ncpus.store(m_cpus.size(), std::memory_order_relaxed);
}

void SoftVm::detach(Cpu* c) {
  std::lock_guard<std::mutex> g(m_lock);
  m_cpus.erase(std::remove(m_cpus.begin(), m_cpus.end(), c), m_cpus.end());
  m_ncpus.store(m_cpus.size(), std::memory_order_relaxed);
}

void SoftVm::mark_code_page(Cpu& owner, uint64_t pfn) {
  if (pfn >= k_max_code_pfn) return;
  uint64_t bit = uint64_t(1) << (pfn & 63);
  uint64_t old = m_code_bits[pfn >> 6].fetch_or(bit, std::memory_order_acq_rel);
  if (old & bit) return;
  // Newly code: direct-write TLB entries for it must go in every vCPU, so the
  // next write takes the slow path and reaches on_code_write.
  owner.tlb.revoke_write_pfn(pfn);
  std::lock_guard<std::mutex> g(m_lock);
  for (Cpu* c : m_cpus)
    if (c != &owner) engine_post(*c, pfn, false);
}

void SoftVm::on_code_write(uint64_t pfn, uint64_t gpa, uint32_t len) {
  if (len && vcpu_count() == 1) {
    Cpu* self = engine_running_cpu();
    if (self && !engine_write_hits_code(*self, pfn, gpa, len)) return;
  }
  if (pfn < k_max_code_pfn) m_code_bits[pfn >> 6].fetch_and(~(uint64_t(1) << (pfn & 63)), std::memory_order_acq_rel);
  Cpu* self = engine_running_cpu();
  if (self) {
    engine_invalidate_page(*self, pfn);
    self->priv->block_stop = true;
  }
  std::lock_guard<std::mutex> g(m_lock);
  for (Cpu* c : m_cpus)
    if (c != self) engine_post(*c, pfn, true);
}

}  // namespace anykvm::soft

namespace anykvm::cpu {
std::unique_ptr<VmBackend> make_soft_vm(MemoryMapSource& memory) {
  return std::make_unique<soft::SoftVm>(memory);
}
}  // namespace anykvm::cpu
