// One test per caps.def row, exercising what the capability promises through
// the ABI. Each passing anykvm test calls prove(); abi_main.cpp fails the run
// if a reported capability was not proven (remove the row or add the test).
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <thread>

#include "abi.h"

namespace abitest {
namespace {

class Caps : public Abi {
 protected:
  long cap(long c) {
    long s = sys(KVM_CHECK_EXTENSION, c);
    int vm = create_vm();
    EXPECT_EQ(io(vm, KVM_CHECK_EXTENSION, c), s) << "system and VM fd disagree on " << c;
    close_fd(vm);
    return s;
  }
  void rerun(const Guest& g) {
    kvm_regs r{};
    r.rip = 0x1000;
    r.rflags = 2;
    ASSERT_EQ(io(g.vcpu, KVM_SET_REGS, &r), 0);
  }
};
ABI_SUITE(Caps);

TEST_P(Caps, UserMemory) {
  ASSERT_GT(cap(KVM_CAP_USER_MEMORY), 0);
  // mov al, [0x1800] ; inc al ; mov [0x1801], al ; hlt
  Guest g = real_mode_guest({0xa0, 0x00, 0x18, 0xfe, 0xc0, 0xa2, 0x01, 0x18, 0xf4});
  g.code->ptr[0x800] = 0x41;
  ASSERT_EQ(run(g), 0);
  ASSERT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_HLT));
  EXPECT_EQ(g.code->ptr[0x801], 0x42) << "the guest wrote the client's memory";
  prove("KVM_CAP_USER_MEMORY");
}

TEST_P(Caps, DestroyMemoryRegionWorks) {
  ASSERT_GT(cap(KVM_CAP_DESTROY_MEMORY_REGION_WORKS), 0);
  // mov al, [0x2000] ; hlt
  Guest g = real_mode_guest({0xa0, 0x00, 0x20, 0xf4});
  GuestMem data(0x1000);
  data.ptr[0] = 0x77;
  ASSERT_EQ(set_region(g.vm, 1, 0, 0x2000, 0x1000, data.uaddr()), 0);
  ASSERT_EQ(run(g), 0);
  ASSERT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_HLT));
  kvm_regs r;
  ASSERT_EQ(io(g.vcpu, KVM_GET_REGS, &r), 0);
  EXPECT_EQ(r.rax & 0xff, 0x77u);
  ASSERT_EQ(set_region(g.vm, 1, 0, 0x2000, 0, data.uaddr()), 0);
  rerun(g);
  ASSERT_EQ(run(g), 0);
  ASSERT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_MMIO)) << "the deleted slot's range is MMIO now";
  EXPECT_EQ(g.run->mmio.phys_addr, 0x2000u);
  EXPECT_FALSE(g.run->mmio.is_write);
  prove("KVM_CAP_DESTROY_MEMORY_REGION_WORKS");
}

TEST_P(Caps, JoinMemoryRegionsWorks) {
  ASSERT_GT(cap(KVM_CAP_JOIN_MEMORY_REGIONS_WORKS), 0);
  // mov al, [0x2000] ; add al, [0x3000] ; mov [0x1800], al ; hlt
  Guest g = real_mode_guest({0xa0, 0x00, 0x20, 0x02, 0x06, 0x00, 0x30, 0xa2, 0x00, 0x18, 0xf4});
  GuestMem data(0x2000);
  data.ptr[0] = 5;
  data.ptr[0x1000] = 7;
  ASSERT_EQ(set_region(g.vm, 1, 0, 0x2000, 0x1000, data.uaddr()), 0);
  ASSERT_EQ(set_region(g.vm, 2, 0, 0x3000, 0x1000, data.uaddr() + 0x1000), 0);
  ASSERT_EQ(set_region(g.vm, 1, 0, 0x2000, 0, 0), 0);
  ASSERT_EQ(set_region(g.vm, 2, 0, 0x3000, 0, 0), 0);
  ASSERT_EQ(set_region(g.vm, 3, 0, 0x2000, 0x2000, data.uaddr()), 0);
  ASSERT_EQ(run(g), 0);
  ASSERT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_HLT));
  EXPECT_EQ(g.code->ptr[0x800], 12);
  prove("KVM_CAP_JOIN_MEMORY_REGIONS_WORKS");
}

TEST_P(Caps, SetTssAddr) {
  ASSERT_GT(cap(KVM_CAP_SET_TSS_ADDR), 0);
  int vm = create_vm();
  EXPECT_EQ(io(vm, KVM_SET_TSS_ADDR, 0xfffbd000ul), 0);
  EXPECT_EQ(io(vm, KVM_SET_TSS_ADDR, 0xfffff000ul), -EINVAL);
  prove("KVM_CAP_SET_TSS_ADDR");
}

TEST_P(Caps, ExtCpuidTheGuestSeesTheSetTable) {
  ASSERT_GT(cap(KVM_CAP_EXT_CPUID), 0);
  auto tp = std::make_unique<CpuidBuf>();
  CpuidBuf& t = *tp;
  t.nent = 256;
  ASSERT_EQ(sys(k_GET_SUPPORTED_CPUID, &t), 0);
  // cpuid ; hlt   (EAX = 0 from KVM_SET_REGS)
  Guest g = real_mode_guest({0x0f, 0xa2, 0xf4});
  bool found = false;
  for (uint32_t i = 0; i < t.nent; ++i)
    if (t.e[i].function == 0) {
      std::memcpy(&t.e[i].ebx, "AnyK", 4);
      std::memcpy(&t.e[i].edx, "vmTe", 4);
      std::memcpy(&t.e[i].ecx, "stVn", 4);
      found = true;
    }
  ASSERT_TRUE(found);
  ASSERT_EQ(io(g.vcpu, k_SET_CPUID2, &t), 0);
  ASSERT_EQ(run(g), 0);
  ASSERT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_HLT));
  kvm_regs r;
  ASSERT_EQ(io(g.vcpu, KVM_GET_REGS, &r), 0);
  char vendor[13] = {};
  uint32_t b = uint32_t(r.rbx), d = uint32_t(r.rdx), c = uint32_t(r.rcx);
  std::memcpy(vendor, &b, 4);
  std::memcpy(vendor + 4, &d, 4);
  std::memcpy(vendor + 8, &c, 4);
  EXPECT_STREQ(vendor, "AnyKvmTestVn");
  prove("KVM_CAP_EXT_CPUID");
}

TEST_P(Caps, MpState) {
  ASSERT_GT(cap(KVM_CAP_MP_STATE), 0);
  int vm = create_vm();
  int vcpu = create_vcpu(vm, 0);
  kvm_mp_state m{};
  ASSERT_EQ(io(vcpu, KVM_GET_MP_STATE, &m), 0);
  EXPECT_EQ(m.mp_state, uint32_t(KVM_MP_STATE_RUNNABLE));
  EXPECT_EQ(io(vcpu, KVM_SET_MP_STATE, &m), 0);
  m.mp_state = KVM_MP_STATE_HALTED;
  EXPECT_EQ(io(vcpu, KVM_SET_MP_STATE, &m), -EINVAL) << "no in-kernel LAPIC";
  prove("KVM_CAP_MP_STATE");
}

TEST_P(Caps, IrqRoutingValidatesLikeLinuxWithoutIrqchip) {
  long n = cap(KVM_CAP_IRQ_ROUTING);
  ASSERT_GE(n, 25) << "QEMU's PC needs gsi_count = value - 1 >= 24";
  int vm = create_vm();  // routes with an irqchip: irqchip_test.cpp GsiRoutingRules
  RoutingBuf r{};
  EXPECT_EQ(io(vm, k_SET_GSI_ROUTING, bad_ptr()), -EFAULT);
  EXPECT_EQ(io(vm, k_SET_GSI_ROUTING, &r), -EINVAL);
  r.nr = uint32_t(n) + 1;
  EXPECT_EQ(io(vm, k_SET_GSI_ROUTING, &r), -EINVAL);
  prove("KVM_CAP_IRQ_ROUTING");
}

std::atomic<kvm_run*> g_kick_run{nullptr};
void set_immediate_exit(int) {
  if (kvm_run* r = g_kick_run.load()) r->immediate_exit = 1;
}

TEST_P(Caps, ImmediateExit) {
  ASSERT_GT(cap(KVM_CAP_IMMEDIATE_EXIT), 0);
  Guest g = real_mode_guest({0xeb, 0xfe});  // jmp $
  // At entry: nothing runs. (6.1 leaves exit_reason as it was here; anykvm
  // sets KVM_EXIT_INTR, which no client can tell from a stale value.)
  g.run->immediate_exit = 1;
  EXPECT_EQ(run(g), -EINTR);
  kvm_regs r;
  ASSERT_EQ(io(g.vcpu, KVM_GET_REGS, &r), 0);
  EXPECT_EQ(r.rip, 0x1000u);
  g.run->immediate_exit = 0;
  // While running: QEMU's kick, a signal whose handler sets immediate_exit
  // on the vCPU thread. Sent repeatedly until KVM_RUN returns.
  struct sigaction sa {}, old{};
  sa.sa_handler = set_immediate_exit;
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(sigaction(SIGUSR1, &sa, &old), 0);
  g_kick_run = g.run;
  std::atomic<bool> done{false};
  const pthread_t self = pthread_self();
  std::thread kicker([&] {
    while (!done.load()) {
      pthread_kill(self, SIGUSR1);
      usleep(2000);
    }
  });
  const long res = run(g);
  done = true;
  kicker.join();
  g_kick_run = nullptr;
  sigaction(SIGUSR1, &old, nullptr);
  EXPECT_EQ(res, -EINTR);
  if (!on_linux()) {
    EXPECT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_INTR));
  }
  prove("KVM_CAP_IMMEDIATE_EXIT");
}

TEST_P(Caps, NrAndMaxVcpus) {
  ANYKVM_ONLY("a kernel's limit is 1024 or more vCPUs");
  long nr = cap(KVM_CAP_NR_VCPUS), max = cap(KVM_CAP_MAX_VCPUS);
  ASSERT_GT(nr, 0);
  ASSERT_GE(max, nr);
  int vm = create_vm();
  for (long i = 0; i < max; ++i) ASSERT_GE(create_vcpu(vm, i), 0) << i;
  EXPECT_EQ(io(vm, KVM_CREATE_VCPU, max), -EINVAL);
  prove("KVM_CAP_NR_VCPUS");
  prove("KVM_CAP_MAX_VCPUS");
}

TEST_P(Caps, MaxVcpuId) {
  long max_id = cap(KVM_CAP_MAX_VCPU_ID);
  ASSERT_GT(max_id, 0);
  int vm = create_vm();
  EXPECT_GE(create_vcpu(vm, max_id - 1), 0);
  EXPECT_EQ(io(vm, KVM_CREATE_VCPU, max_id), -EINVAL);
  prove("KVM_CAP_MAX_VCPU_ID");
}

TEST_P(Caps, NrMemslots) {
  long n = cap(KVM_CAP_NR_MEMSLOTS);
  ASSERT_GT(n, 0);
  int vm = create_vm();
  GuestMem m(0x1000);
  EXPECT_EQ(set_region(vm, uint32_t(n - 1), 0, 0, 0x1000, m.uaddr()), 0);
  EXPECT_EQ(set_region(vm, uint32_t(n), 0, 0x1000, 0x1000, m.uaddr()), -EINVAL);
  // Many slots at once.
  for (uint32_t s = 0; s < 512; ++s) ASSERT_EQ(set_region(vm, s, 0, 0x100000 + s * 0x1000ull, 0x1000, m.uaddr()), 0) << s;
  prove("KVM_CAP_NR_MEMSLOTS");
}

TEST_P(Caps, ReadonlyMem) {
  ASSERT_GT(cap(KVM_CAP_READONLY_MEM), 0);
  // mov ax, [0x2000] ; mov [0x2002], ax ; hlt
  Guest g = real_mode_guest({0xa1, 0x00, 0x20, 0xa3, 0x02, 0x20, 0xf4});
  GuestMem ro(0x1000);
  ro.ptr[0] = 0x34;
  ro.ptr[1] = 0x12;
  ASSERT_EQ(set_region(g.vm, 1, KVM_MEM_READONLY, 0x2000, 0x1000, ro.uaddr()), 0);
  ASSERT_EQ(run(g), 0);
  ASSERT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_MMIO));
  EXPECT_TRUE(g.run->mmio.is_write);
  EXPECT_EQ(g.run->mmio.phys_addr, 0x2002u);
  EXPECT_EQ(g.run->mmio.len, 2u);
  EXPECT_EQ(g.run->mmio.data[0], 0x34);
  EXPECT_EQ(g.run->mmio.data[1], 0x12);
  ASSERT_EQ(run(g), 0);
  EXPECT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_HLT));
  EXPECT_EQ(ro.ptr[2], 0);
  prove("KVM_CAP_READONLY_MEM");
}

TEST_P(Caps, SetIdentityMapAddr) {
  ASSERT_GT(cap(KVM_CAP_SET_IDENTITY_MAP_ADDR), 0);
  int vm = create_vm();
  uint64_t a = 0xfffbc000;
  EXPECT_EQ(io(vm, KVM_SET_IDENTITY_MAP_ADDR, &a), 0);
  create_vcpu(vm, 0);
  EXPECT_EQ(io(vm, KVM_SET_IDENTITY_MAP_ADDR, &a), -EINVAL);
  prove("KVM_CAP_SET_IDENTITY_MAP_ADDR");
}

}  // namespace
}  // namespace abitest
