// KVM_IOEVENTFD (virt/kvm/eventfd.c): guest writes to a port or an MMIO
// address that signal an eventfd instead of exiting to user space. The table
// belongs to the VM, not the irqchip: Linux serves ioeventfds without an
// in-kernel irqchip too. With an irqchip its PIO/MMIO buses consult the table
// before any exit; without one KVM_RUN consults it on an OUT or MMIO-write
// exit and re-enters the guest (kvmapi), so user space never sees the access.
// Left out: matching each element of REP OUTS (string port I/O always exits).
//
// Threading: any thread; m_lock guards the table (taken inside the irqchip's
// lock on its buses, never the other way round).
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

#include "cpu/backend.h"

namespace anykvm::machine {

// eventfd helpers shared with the irqchip's irqfds.
// -EBADF for a closed fd, -EINVAL for a non-eventfd (eventfd_ctx_fdget).
int check_eventfd(int fd);
// The same open file (the kernel compares eventfd contexts, not fd numbers).
bool same_open_file(int a, int b);
void signal_eventfd(int fd);

// Linux's io buses an ioeventfd can sit on (ioeventfd_bus_from_flags).
enum class IoBus : uint8_t { Mmio, Pio, VirtioCcwNotify };

class Ioeventfds {
 public:
  struct Args {
    IoBus bus = IoBus::Mmio;
    uint64_t addr = 0;
    uint32_t len = 0;                  // 0: any length ("wildcard" address)
    std::optional<uint64_t> datamatch;  // nullopt: any data
    int fd = -1;
  };

  Ioeventfds() = default;
  ~Ioeventfds();
  Ioeventfds(const Ioeventfds&) = delete;
  Ioeventfds& operator=(const Ioeventfds&) = delete;

  // kvm_assign_ioeventfd_idx / kvm_deassign_ioeventfd_idx (arguments already
  // validated by the caller): 0 or -errno.
  int assign(const Args& a);
  int deassign(const Args& a);

  // A guest write: true if an ioeventfd took it (its eventfd is signalled).
  bool write(IoBus bus, uint64_t addr, unsigned len, const void* data);
  // An exit the engine produced without an irqchip: an OUT (one element) or
  // an MMIO write that an ioeventfd takes. true: signalled, re-enter the guest.
  bool take_exit(const cpu::VcpuExit& e, const uint8_t* pio_page);

 private:
  std::mutex m_lock;
  std::vector<Args> m_table;  // fd: our dup
  std::atomic<size_t> m_count{0};
};

}  // namespace anykvm::machine
