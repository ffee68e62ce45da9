// The "in-kernel" part of a VM: memslots, the engine, vCPUs and their run
// areas. Lifetime: a Vm lives while any handle (VM fd or vCPU fd) refers to
// it, through shared_ptr (kvmapi holds them per fd). Any thread: VM-level
// calls lock m_lock; each Vcpu serialises its own calls with its mutex, as
// Linux's vcpu->mutex does.
#pragma once
#include <signal.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "base/result.h"
#include "base/types.h"
#include "cpu/backend.h"
#include "machine/irqchip.h"
#include "machine/memslots.h"

namespace anykvm::machine {

constexpr uint32_t k_max_vcpus = 64;        // reported as KVM_CAP_NR_VCPUS / MAX_VCPUS
constexpr uint32_t k_max_vcpu_ids = 4096;   // KVM_MAX_VCPU_IDS on x86
constexpr size_t k_vcpu_mmap_size = 3 * 4096;  // kvm_run, PIO data page, (coalesced ring page)
constexpr size_t k_pio_page_offset = 4096;     // KVM_PIO_PAGE_OFFSET * PAGE_SIZE

class Vm;

class Vcpu {
 public:
  Vcpu(std::shared_ptr<Vm> vm, VcpuId id, std::unique_ptr<cpu::VcpuBackend> backend, int memfd, uint8_t* area);
  ~Vcpu();
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;

  VcpuId id() const { return m_id; }
  // The memfd that backs the run area; the client's fd for this vCPU is a dup of it.
  int memfd() const { return m_memfd; }
  uint8_t* run_area() const { return m_area; }
  uint8_t* pio_page() const { return m_area + k_pio_page_offset; }
  cpu::VcpuBackend& backend() { return *m_backend; }
  std::mutex& mutex() { return m_mutex; }
  std::atomic<bool>& kick_flag() { return m_kick; }
  Vm& vm() { return *m_vm; }

  // KVM_SET_SIGNAL_MASK: the mask to apply while in KVM_RUN (nullopt = none).
  std::optional<sigset_t> sigmask;
  // The table given by KVM_SET_CPUID2 (for KVM_GET_CPUID2).
  std::vector<cpu::CpuidEntry> cpuid;
  // The last exit was an MMIO read whose data the client supplies on re-entry.
  bool mmio_read_pending = false;
  // Its in-kernel LAPIC when the VM has an irqchip (owned by the Irqchip).
  VcpuIrq* irq = nullptr;

 private:
  std::shared_ptr<Vm> m_vm;
  VcpuId m_id;
  std::unique_ptr<cpu::VcpuBackend> m_backend;
  int m_memfd;
  uint8_t* m_area;
  std::mutex m_mutex;
  std::atomic<bool> m_kick{false};
};

class Vm : public std::enable_shared_from_this<Vm> {
 public:
  static std::shared_ptr<Vm> create();
  ~Vm();

  MemSlots& memslots() { return m_memslots; }
  Result<std::shared_ptr<Vcpu>> create_vcpu(uint32_t id);
  size_t vcpu_count();

  Result<void> set_tss_addr(uint64_t addr);
  Result<void> set_identity_map_addr(uint64_t addr);

  // KVM_CREATE_IRQCHIP / KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP): EEXIST if one
  // exists, EINVAL once a vCPU exists (x86.c).
  Result<void> create_irqchip(IrqchipMode mode);
  // Null until then; lives as long as the Vm.
  Irqchip* irqchip() { return m_irqchip_ptr.load(std::memory_order_acquire); }
  // KVM_IOEVENTFD's table (with or without an irqchip).
  Ioeventfds& ioeventfds() { return m_ioeventfds; }

 private:
  Vm();
  cpu::MemoryMapSource m_memory;
  MemSlots m_memslots{m_memory};
  std::unique_ptr<cpu::VmBackend> m_backend;
  std::mutex m_lock;
  std::map<uint32_t, std::weak_ptr<Vcpu>> m_vcpus;
  uint32_t m_created_vcpus = 0;
  uint64_t m_tss_addr = 0, m_identity_map_addr = 0;
  Ioeventfds m_ioeventfds;  // before m_irqchip, which points at it
  std::unique_ptr<Irqchip> m_irqchip;
  std::atomic<Irqchip*> m_irqchip_ptr{nullptr};
};

}  // namespace anykvm::machine
