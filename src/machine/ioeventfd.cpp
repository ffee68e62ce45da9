// KVM_IOEVENTFD's table and matching; see ioeventfd.h.
#include "machine/ioeventfd.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace anykvm::machine {

namespace {

constexpr size_t k_max_bus_devices = 1000;  // NR_IOBUS_DEVS

bool is_eventfd(int fd) {
  char link[48], target[64];
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof(target) - 1);
  if (n <= 0) return false;
  target[n] = 0;
  return strcmp(target, "anon_inode:[eventfd]") == 0;
}

}  // namespace

int check_eventfd(int fd) {
  if (fd < 0 || fcntl(fd, F_GETFD) < 0) return -EBADF;
  return is_eventfd(fd) ? 0 : -EINVAL;
}

bool same_open_file(int a, int b) {
  if (a == b) return true;
  return syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, a, b) == 0;
}

void signal_eventfd(int fd) {
  uint64_t one = 1;
  ssize_t r = write(fd, &one, sizeof(one));
  (void)r;  // EAGAIN at the counter's maximum: the reader is behind anyway
}

Ioeventfds::~Ioeventfds() {
  for (const Args& a : m_table) close(a.fd);
}

int Ioeventfds::assign(const Args& a) {
  if (int r = check_eventfd(a.fd)) return r;
  std::lock_guard<std::mutex> g(m_lock);
  // ioeventfd_check_collision: same bus and address, and either length is
  // "any", or same length and either data is "any" or the data are equal.
  size_t on_bus = 0;
  for (const Args& b : m_table) {
    if (b.bus != a.bus) continue;
    ++on_bus;
    if (b.addr != a.addr) continue;
    if (!b.len || !a.len || (b.len == a.len && (!b.datamatch || !a.datamatch || *b.datamatch == *a.datamatch)))
      return -EEXIST;
  }
  if (on_bus >= k_max_bus_devices) return -ENOSPC;  // kvm_io_bus_register_dev
  Args e = a;
  e.fd = fcntl(a.fd, F_DUPFD_CLOEXEC, 0);
  if (e.fd < 0) return -errno;
  m_table.push_back(e);
  m_count.store(m_table.size(), std::memory_order_release);
  return 0;
}

int Ioeventfds::deassign(const Args& a) {
  if (int r = check_eventfd(a.fd)) return r;
  std::lock_guard<std::mutex> g(m_lock);
  for (size_t i = 0; i < m_table.size(); ++i) {
    const Args& b = m_table[i];
    if (b.bus != a.bus || b.addr != a.addr || b.len != a.len) continue;
    if (b.datamatch.has_value() != a.datamatch.has_value()) continue;  // p->wildcard != wildcard
    if (a.datamatch && *a.datamatch != *b.datamatch) continue;
    if (!same_open_file(b.fd, a.fd)) continue;
    close(b.fd);
    m_table.erase(m_table.begin() + long(i));
    m_count.store(m_table.size(), std::memory_order_release);
    return 0;
  }
  return -ENOENT;
}

bool Ioeventfds::write(IoBus bus, uint64_t addr, unsigned len, const void* data) {
  if (!m_count.load(std::memory_order_acquire)) return false;
  std::lock_guard<std::mutex> g(m_lock);
  // ioeventfd_in_range: the address must be exact; length 0 matches any
  // access; otherwise the length must be equal and, with a datamatch, the
  // value (of that width) too.
  for (const Args& a : m_table) {
    if (a.bus != bus || a.addr != addr) continue;
    if (a.len) {
      if (a.len != len) continue;
      if (a.datamatch) {
        uint64_t v = 0;
        std::memcpy(&v, data, std::min(len, 8u));
        if (v != *a.datamatch) continue;
      }
    }
    signal_eventfd(a.fd);
    return true;
  }
  return false;
}

bool Ioeventfds::take_exit(const cpu::VcpuExit& e, const uint8_t* pio_page) {
  if (!m_count.load(std::memory_order_acquire)) return false;
  if (e.reason == cpu::ExitReason::Io && e.io.out && e.io.count == 1)
    return write(IoBus::Pio, e.io.port, e.io.size, pio_page);
  if (e.reason == cpu::ExitReason::Mmio && e.mmio.is_write) return write(IoBus::Mmio, e.mmio.gpa, e.mmio.len, e.mmio.data);
  return false;
}

}  // namespace anykvm::machine
