// ABI tests: the KVM API through libanykvm's own entry points (the ones the
// interposer calls: kvmapi::open_system / ioctl / on_close / on_dup), with
// Linux's exact ioctl numbers from <linux/kvm.h>, expecting Linux 6.1's errno.
//
// Every test is parameterised on a backend: "anykvm" always runs; "linux"
// runs the same test against the host's real /dev/kvm when it can be opened
// (skipped otherwise), which checks the expectations themselves against a
// real kernel. Tests of behaviour that changed after 6.1, or that would be
// too heavy on hardware (thousands of vCPUs), run on anykvm only.
//
// Coverage (abi_main.cpp): with no --gtest_filter, the run fails unless every
// ioctl in ioctls.def was called and (except the few that cannot fail) failed
// at least once, and every capability in caps.def was proven by a passing test.
#pragma once
#include <linux/kvm.h>
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace abitest {

// The requests whose struct ends in a flexible array, and those structs. In
// C++, 6.1's <linux/kvm.h> (__DECLARE_FLEX_ARRAY) sizes them differently from
// C, which changes the ioctl numbers; clients are C (QEMU), so the numbers and
// layouts are spelled here as C computes them (System.FlexArrayRequestsAsC
// checks them against kvmapi's C-compiled table).
constexpr unsigned long k_GET_MSR_INDEX_LIST = 0xc004ae02;
constexpr unsigned long k_GET_SUPPORTED_CPUID = 0xc008ae05;
constexpr unsigned long k_SET_CPUID2 = 0x4008ae90;
constexpr unsigned long k_GET_CPUID2 = 0xc008ae91;
constexpr unsigned long k_GET_MSRS = 0xc008ae88;
constexpr unsigned long k_SET_MSRS = 0x4008ae89;
constexpr unsigned long k_SET_SIGNAL_MASK = 0x4004ae8b;
constexpr unsigned long k_SET_GSI_ROUTING = 0x4008ae6a;

struct MsrListBuf {  // kvm_msr_list
  uint32_t nmsrs;
  uint32_t indices[1024];
};
struct CpuidBuf {  // kvm_cpuid2
  uint32_t nent, padding;
  kvm_cpuid_entry2 e[256];
};
struct MsrsBuf {  // kvm_msrs
  uint32_t nmsrs, pad;
  kvm_msr_entry e[4];
};
struct RoutingBuf {  // kvm_irq_routing
  uint32_t nr, flags;
  kvm_irq_routing_entry e[1];
};
struct SigmaskBuf {  // kvm_signal_mask
  uint32_t len;
  uint8_t sigset[8];
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual bool is_linux() const = 0;
  virtual int open_kvm() = 0;  // fd or -errno
  virtual long ioctl(int fd, unsigned long request, unsigned long arg) = 0;  // >= 0 or -errno
  virtual void close(int fd) = 0;
  virtual int dup(int fd) = 0;
};

Backend& anykvm_backend();
Backend& linux_backend();
bool linux_available();

// Coverage records (anykvm backend only).
void note_ioctl(int kind, uint32_t request, long result);
// A test proved what a caps.def row promises.
void prove_cap(const char* name);

// A bad user pointer: mapped nowhere (the page is unmapped on first use).
unsigned long bad_ptr();

// Anonymous guest memory, page aligned.
struct GuestMem {
  explicit GuestMem(size_t size);
  ~GuestMem();
  GuestMem(const GuestMem&) = delete;
  GuestMem& operator=(const GuestMem&) = delete;
  uint8_t* ptr = nullptr;
  size_t size = 0;
  uint64_t uaddr() const { return reinterpret_cast<uint64_t>(ptr); }
};

class Abi : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override;
  void TearDown() override;

  Backend& be() { return *m_be; }
  bool on_linux() const { return m_be->is_linux(); }

  // ioctl through the backend: >= 0 or -errno.
  long io(int fd, unsigned long request, unsigned long arg = 0) { return m_be->ioctl(fd, request, arg); }
  template <typename T>
  long io(int fd, unsigned long request, T* p) {
    return m_be->ioctl(fd, request, reinterpret_cast<unsigned long>(p));
  }
  long sys(unsigned long request, unsigned long arg = 0) { return io(m_kvm, request, arg); }
  template <typename T>
  long sys(unsigned long request, T* p) {
    return io(m_kvm, request, p);
  }

  int kvm() const { return m_kvm; }
  int create_vm();  // asserts success; closed at TearDown unless closed
  int create_vcpu(int vm, unsigned long id = 0);
  long set_region(int vm, uint32_t slot, uint32_t flags, uint64_t gpa, uint64_t size, uint64_t uaddr);
  kvm_run* map_run(int vcpu);  // mmap of GET_VCPU_MMAP_SIZE at offset 0
  size_t mmap_size();
  void close_fd(int fd);

  // A vCPU ready to run 16-bit real-mode code at guest-physical 0x1000
  // (CS base 0), with `code` copied into a 4 KiB slot 0 there.
  struct Guest {
    int vm = -1, vcpu = -1;
    kvm_run* run = nullptr;
    GuestMem* code = nullptr;
  };
  Guest real_mode_guest(const std::vector<uint8_t>& code, uint32_t code_slot = 0);
  // CS base 0, IP 0x1000, RFLAGS 2: the start state of real_mode_guest().
  void start_real_mode_at_0x1000(int vcpu);
  long run(const Guest& g) { return io(g.vcpu, KVM_RUN, 0ul); }
  // A caps.def row was proven by this (anykvm) test, if it passed.
  void prove(const char* cap) {
    if (!on_linux()) prove_cap(cap);
  }

 private:
  Backend* m_be = nullptr;
  int m_kvm = -1;
  std::vector<int> m_fds;
  std::vector<std::pair<void*, size_t>> m_maps;
  std::vector<std::unique_ptr<GuestMem>> m_mems;
};

std::string backend_name(const ::testing::TestParamInfo<const char*>& info);

#define ABI_SUITE(suite) INSTANTIATE_TEST_SUITE_P(, suite, ::testing::Values("anykvm", "linux"), abitest::backend_name)

// anykvm only (Linux 6.1 semantics that a newer host kernel changed, or too heavy for hardware).
#define ANYKVM_ONLY(why)                       \
  do {                                         \
    if (on_linux()) GTEST_SKIP() << why;       \
  } while (0)

}  // namespace abitest
