// VM and vCPU objects; see vm.h. vCPU run areas are memfds so that the
// client's own mmap of the vCPU fd maps the very pages we write (DESIGN.md
// "The vCPU mmap area is real memory").
#include "machine/vm.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

namespace anykvm::machine {

Vcpu::Vcpu(std::shared_ptr<Vm> vm, VcpuId id, std::unique_ptr<cpu::VcpuBackend> backend, int memfd, uint8_t* area)
    : m_vm(std::move(vm)), m_id(id), m_backend(std::move(backend)), m_memfd(memfd), m_area(area) {}

Vcpu::~Vcpu() {
  m_backend.reset();
  munmap(m_area, k_vcpu_mmap_size);
  close(m_memfd);
}

Vm::Vm() : m_backend(cpu::make_soft_vm(m_memory)) {}
Vm::~Vm() = default;

std::shared_ptr<Vm> Vm::create() { return std::shared_ptr<Vm>(new Vm()); }

Result<std::shared_ptr<Vcpu>> Vm::create_vcpu(uint32_t id) {
  std::lock_guard<std::mutex> g(m_lock);
  if (id >= k_max_vcpu_ids) return err(EINVAL);
  if (m_created_vcpus >= k_max_vcpus) return err(EINVAL);
  if (m_vcpus.count(id)) return err(EEXIST);
  int fd = memfd_create("anykvm:kvm-vcpu", MFD_CLOEXEC);  // name: kvmapi adopt_inherited
  if (fd < 0) return err(errno);
  if (ftruncate(fd, k_vcpu_mmap_size) != 0) {
    int e = errno;
    close(fd);
    return err(e);
  }
  void* area = mmap(nullptr, k_vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (area == MAP_FAILED) {
    int e = errno;
    close(fd);
    return err(e);
  }
  auto v = std::make_shared<Vcpu>(shared_from_this(), VcpuId(id), m_backend->create_vcpu(VcpuId(id)), fd,
                                  static_cast<uint8_t*>(area));
  if (m_irqchip) {  // kvm_create_lapic: the vCPU's LAPIC, wired into the engine
    v->irq = m_irqchip->add_vcpu(VcpuId(id));
    v->irq->set_sigmask_source(&v->sigmask);
    v->backend().attach_local_devices(v->irq);
    // kvm_arch_vcpu_create: with an in-kernel LAPIC an AP waits for INIT/SIPI.
    if (id != 0) v->backend().set_mp_state(cpu::MpState::Uninitialized);
  }
  m_vcpus[id] = v;
  ++m_created_vcpus;  // like Linux, a vCPU id stays taken for the VM's life
  return v;
}

size_t Vm::vcpu_count() {
  std::lock_guard<std::mutex> g(m_lock);
  return m_created_vcpus;
}

Result<void> Vm::set_tss_addr(uint64_t addr) {
  // vmx_set_tss_addr: the three TSS pages must fit below 4 GiB.
  if (addr > uint64_t(uint32_t(-3 * 4096))) return err(EINVAL);
  std::lock_guard<std::mutex> g(m_lock);
  m_tss_addr = addr;
  return {};
}

Result<void> Vm::create_irqchip(IrqchipMode mode) {
  std::lock_guard<std::mutex> g(m_lock);
  if (m_irqchip) return err(EEXIST);
  if (m_created_vcpus) return err(EINVAL);
  m_irqchip = std::make_unique<Irqchip>(mode, &m_ioeventfds);
  m_irqchip_ptr.store(m_irqchip.get(), std::memory_order_release);
  return {};
}

Result<void> Vm::set_identity_map_addr(uint64_t addr) {
  std::lock_guard<std::mutex> g(m_lock);
  if (m_created_vcpus) return err(EINVAL);  // only before the first vCPU, as Linux
  m_identity_map_addr = addr;
  return {};
}

}  // namespace anykvm::machine
