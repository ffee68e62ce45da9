// The two backends, the fixture and the coverage check; see abi.h.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <mutex>
#include <set>

#include "abi.h"
#include "kvmapi/handles.h"
#include "kvmapi/kvmapi.h"

namespace abitest {

namespace {

class AnykvmBackend final : public Backend {
 public:
  const char* name() const override { return "anykvm"; }
  bool is_linux() const override { return false; }
  int open_kvm() override { return anykvm::kvmapi::open_system(O_RDWR | O_CLOEXEC); }
  long ioctl(int fd, unsigned long request, unsigned long arg) override {
    auto h = anykvm::kvmapi::lookup(fd);
    long r = anykvm::kvmapi::ioctl(fd, request, arg);
    if (h) note_ioctl(int(h->kind), uint32_t(request), r);
    return r;
  }
  void close(int fd) override {
    ::close(fd);
    anykvm::kvmapi::on_close(fd);
  }
  int dup(int fd) override {
    int r = ::dup(fd);
    if (r >= 0) anykvm::kvmapi::on_dup(fd, r);
    return r;
  }
};

class LinuxBackend final : public Backend {
 public:
  const char* name() const override { return "linux"; }
  bool is_linux() const override { return true; }
  int open_kvm() override {
    int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
  }
  long ioctl(int fd, unsigned long request, unsigned long arg) override {
    long r = ::ioctl(fd, request, arg);
    return r < 0 ? -errno : r;
  }
  void close(int fd) override { ::close(fd); }
  int dup(int fd) override { return ::dup(fd); }
};

std::mutex g_cov_lock;
std::set<std::pair<int, uint32_t>> g_called, g_failed;
std::set<std::string> g_proven;

// Rows that cannot fail on Linux whatever the argument.
bool cannot_fail(const char* name) {
  return !strcmp(name, "KVM_CHECK_EXTENSION") || !strcmp(name, "KVM_NMI");
}

class CoverageCheck : public ::testing::Environment {
 public:
  void TearDown() override {
    if (GTEST_FLAG_GET(filter) != "*") return;  // a partial run proves nothing
    std::lock_guard<std::mutex> g(g_cov_lock);
    for (const auto& i : anykvm::kvmapi::ioctls()) {
      const auto key = std::make_pair(int(i.kind), i.number);
      EXPECT_TRUE(g_called.count(key)) << i.name << " on a " << anykvm::kvmapi::fd_kind_name(i.kind)
                                       << " fd is in ioctls.def but no ABI test calls it";
      if (!cannot_fail(i.name)) {
        EXPECT_TRUE(g_failed.count(key)) << i.name << " on a " << anykvm::kvmapi::fd_kind_name(i.kind)
                                         << " fd has no bad-argument test";
      }
    }
    for (const auto& c : anykvm::kvmapi::capabilities())
      EXPECT_TRUE(g_proven.count(c.name)) << c.name
                                          << " is reported by caps.def but no passing test proves it: remove it "
                                             "or test it";
  }
};

[[maybe_unused]] ::testing::Environment* const g_env = ::testing::AddGlobalTestEnvironment(new CoverageCheck);

}  // namespace

void note_ioctl(int kind, uint32_t request, long result) {
  std::lock_guard<std::mutex> g(g_cov_lock);
  g_called.insert({kind, request});
  if (result < 0) g_failed.insert({kind, request});
}

void prove_cap(const char* name) {
  if (::testing::Test::HasFailure()) return;
  std::lock_guard<std::mutex> g(g_cov_lock);
  g_proven.insert(name);
}

Backend& anykvm_backend() {
  static AnykvmBackend b;
  return b;
}
Backend& linux_backend() {
  static LinuxBackend b;
  return b;
}
bool linux_available() {
  static const bool ok = [] {
    int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) return false;
    bool v = ::ioctl(fd, KVM_GET_API_VERSION, 0) == KVM_API_VERSION;
    ::close(fd);
    return v;
  }();
  return ok;
}

unsigned long bad_ptr() {
  static void* p = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return reinterpret_cast<unsigned long>(p);
}

GuestMem::GuestMem(size_t n) : size(n) {
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ptr = p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
}
GuestMem::~GuestMem() {
  if (ptr) munmap(ptr, size);
}

std::string backend_name(const ::testing::TestParamInfo<const char*>& info) { return info.param; }

void Abi::SetUp() {
  if (!strcmp(GetParam(), "linux")) {
    if (!linux_available()) GTEST_SKIP() << "no usable /dev/kvm on this host";
    m_be = &linux_backend();
  } else {
    m_be = &anykvm_backend();
  }
  m_kvm = m_be->open_kvm();
  ASSERT_GE(m_kvm, 0) << strerror(int(-m_kvm));
}

void Abi::TearDown() {
  for (auto& [p, n] : m_maps) munmap(p, n);
  for (auto it = m_fds.rbegin(); it != m_fds.rend(); ++it) m_be->close(*it);
  if (m_be && m_kvm >= 0) m_be->close(m_kvm);
  m_mems.clear();
}

int Abi::create_vm() {
  long fd = sys(KVM_CREATE_VM, 0);
  EXPECT_GE(fd, 0) << strerror(int(-fd));
  if (fd >= 0) m_fds.push_back(int(fd));
  return int(fd);
}

int Abi::create_vcpu(int vm, unsigned long id) {
  long fd = io(vm, KVM_CREATE_VCPU, id);
  EXPECT_GE(fd, 0) << strerror(int(-fd));
  if (fd >= 0) m_fds.push_back(int(fd));
  return int(fd);
}

void Abi::close_fd(int fd) {
  for (auto it = m_fds.begin(); it != m_fds.end(); ++it)
    if (*it == fd) {
      m_fds.erase(it);
      break;
    }
  m_be->close(fd);
}

long Abi::set_region(int vm, uint32_t slot, uint32_t flags, uint64_t gpa, uint64_t size, uint64_t uaddr) {
  kvm_userspace_memory_region r{slot, flags, gpa, size, uaddr};
  return io(vm, KVM_SET_USER_MEMORY_REGION, &r);
}

size_t Abi::mmap_size() { return size_t(sys(KVM_GET_VCPU_MMAP_SIZE, 0)); }

kvm_run* Abi::map_run(int vcpu) {
  size_t n = mmap_size();
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  EXPECT_NE(p, MAP_FAILED) << strerror(errno);
  if (p == MAP_FAILED) return nullptr;
  m_maps.push_back({p, n});
  return static_cast<kvm_run*>(p);
}

Abi::Guest Abi::real_mode_guest(const std::vector<uint8_t>& code, uint32_t code_slot) {
  Guest g;
  m_mems.push_back(std::make_unique<GuestMem>(4096));
  g.code = m_mems.back().get();
  std::memcpy(g.code->ptr, code.data(), code.size());
  g.vm = create_vm();
  EXPECT_EQ(set_region(g.vm, code_slot, 0, 0x1000, 4096, g.code->uaddr()), 0);
  g.vcpu = create_vcpu(g.vm, 0);
  g.run = map_run(g.vcpu);
  start_real_mode_at_0x1000(g.vcpu);
  return g;
}

void Abi::start_real_mode_at_0x1000(int vcpu) {
  kvm_sregs s;
  EXPECT_EQ(io(vcpu, KVM_GET_SREGS, &s), 0);
  s.cs.base = 0;
  s.cs.selector = 0;
  EXPECT_EQ(io(vcpu, KVM_SET_SREGS, &s), 0);
  kvm_regs r{};
  r.rip = 0x1000;
  r.rflags = 2;
  EXPECT_EQ(io(vcpu, KVM_SET_REGS, &r), 0);
}

}  // namespace abitest
