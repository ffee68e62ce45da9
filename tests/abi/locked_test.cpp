// LOCK-prefixed instructions and XCHG are atomic across vCPUs (SDM vol. 3,
// 9.1.2.2): two vCPUs of one VM run the same loop at once on two threads,
// each iteration doing LOCK INC and LOCK XADD on shared counters, a spin lock
// taken with LOCK CMPXCHG and released by a plain store around a plain
// increment, and a second spin lock taken with XCHG around another. No
// update may be lost. (With non-atomic read-modify-writes the totals come out
// short within a few thousand iterations on a two-core host.)
#include <thread>

#include "abi.h"

namespace abitest {
namespace {

// Real mode, code at 0x1000, both vCPUs (GNU as --32, .code16):
//   mov ecx, 100000
// 1: lock inc dword [0x6000]; mov ebx, 1; lock xadd [0x6010], ebx
// 2: mov edx, 1; xor eax, eax; lock cmpxchg [0x6004], edx; jnz 2b
//    inc dword [0x6008] (as mov/inc/mov); mov dword [0x6004], 0
// 3: mov eax, 1; xchg [0x6014], eax; test eax, eax; jnz 3b
//    inc dword [0x6018]; mov dword [0x6014], 0
//    addr32 loop 1b; out 0x10, al; hlt
const std::vector<uint8_t> k_locked_guest = {
    0x66, 0xb9, 0xa0, 0x86, 0x01, 0x00, 0x66, 0xf0, 0xff, 0x06, 0x00, 0x60, 0x66, 0xbb, 0x01, 0x00, 0x00, 0x00,
    0x66, 0xf0, 0x0f, 0xc1, 0x1e, 0x10, 0x60, 0x66, 0xba, 0x01, 0x00, 0x00, 0x00, 0x66, 0x31, 0xc0, 0x66, 0xf0,
    0x0f, 0xb1, 0x16, 0x04, 0x60, 0x75, 0xee, 0x66, 0xa1, 0x08, 0x60, 0x66, 0x40, 0x66, 0xa3, 0x08, 0x60, 0x66,
    0xc7, 0x06, 0x04, 0x60, 0x00, 0x00, 0x00, 0x00, 0x66, 0xb8, 0x01, 0x00, 0x00, 0x00, 0x66, 0x87, 0x06, 0x14,
    0x60, 0x66, 0x85, 0xc0, 0x75, 0xf0, 0x66, 0xff, 0x06, 0x18, 0x60, 0x66, 0xc7, 0x06, 0x14, 0x60, 0x00, 0x00,
    0x00, 0x00, 0x67, 0xe2, 0xa7, 0xe6, 0x10, 0xf4};
constexpr uint32_t k_iterations = 100000;

class Locked : public Abi {};
ABI_SUITE(Locked);

TEST_P(Locked, NoUpdateLostBetweenTwoVcpus) {
  GuestMem mem(0x8000);
  std::memcpy(mem.ptr + 0x1000, k_locked_guest.data(), k_locked_guest.size());
  int vm = create_vm();
  ASSERT_EQ(set_region(vm, 0, 0, 0, 0x8000, mem.uaddr()), 0);
  int vcpu[2];
  kvm_run* run[2];
  for (int k = 0; k < 2; ++k) {
    vcpu[k] = create_vcpu(vm, unsigned(k));
    run[k] = map_run(vcpu[k]);
    start_real_mode_at_0x1000(vcpu[k]);
  }
  long rc[2] = {0, 0};
  uint32_t exit[2] = {0, 0};
  auto body = [&](int k) {
    do {
      rc[k] = io(vcpu[k], KVM_RUN, 0ul);
    } while (rc[k] == -EINTR);
    exit[k] = run[k]->exit_reason;
  };
  std::thread t0(body, 0), t1(body, 1);
  t0.join();
  t1.join();
  for (int k = 0; k < 2; ++k) {
    if (on_linux() && rc[k] == 0 && exit[k] == KVM_EXIT_INTERNAL_ERROR)
      GTEST_SKIP() << "this host's KVM cannot run the real-mode guest";
    ASSERT_EQ(rc[k], 0);
    ASSERT_EQ(exit[k], uint32_t(KVM_EXIT_IO)) << "vCPU " << k;
    EXPECT_EQ(run[k]->io.port, 0x10);
  }
  auto u32 = [&](uint32_t a) {
    uint32_t v;
    std::memcpy(&v, mem.ptr + a, 4);
    return v;
  };
  EXPECT_EQ(u32(0x6000), 2 * k_iterations) << "LOCK INC";
  EXPECT_EQ(u32(0x6010), 2 * k_iterations) << "LOCK XADD";
  EXPECT_EQ(u32(0x6008), 2 * k_iterations) << "under a LOCK CMPXCHG spin lock";
  EXPECT_EQ(u32(0x6018), 2 * k_iterations) << "under an XCHG spin lock";
  EXPECT_EQ(u32(0x6004), 0u);
  EXPECT_EQ(u32(0x6014), 0u);
}

// LOCK CMPXCHG8B on a VM with two vCPUs (only the first runs), as Linux's
// SLUB cmpxchg_double does on i386 once its LOCK prefixes stay (SMP): a
// matching compare stores ECX:EBX and sets ZF; a mismatch loads EDX:EAX and
// clears ZF (SDM CMPXCHG8B). Real mode at 0x1000:
//   mov dword [0x6000], 0x11111111; mov dword [0x6004], 0x22222222
//   mov eax, 0x11111111; mov edx, 0x22222222; mov ebx, 0x33333333; mov ecx, 0x44444444
//   lock cmpxchg8b [0x6000]; setz [0x6008]
//   mov eax, 0x55555555; mov edx, 0x66666666; lock cmpxchg8b [0x6000]; setz [0x6009]
//   mov [0x6010], eax; mov [0x6014], edx; out 0x10, al; hlt
const std::vector<uint8_t> k_cmpxchg8b_guest = {
    0x66, 0xc7, 0x06, 0x00, 0x60, 0x11, 0x11, 0x11, 0x11, 0x66, 0xc7, 0x06, 0x04, 0x60, 0x22, 0x22, 0x22, 0x22,
    0x66, 0xb8, 0x11, 0x11, 0x11, 0x11, 0x66, 0xba, 0x22, 0x22, 0x22, 0x22, 0x66, 0xbb, 0x33, 0x33, 0x33, 0x33,
    0x66, 0xb9, 0x44, 0x44, 0x44, 0x44, 0xf0, 0x0f, 0xc7, 0x0e, 0x00, 0x60, 0x0f, 0x94, 0x06, 0x08, 0x60, 0x66,
    0xb8, 0x55, 0x55, 0x55, 0x55, 0x66, 0xba, 0x66, 0x66, 0x66, 0x66, 0xf0, 0x0f, 0xc7, 0x0e, 0x00, 0x60, 0x0f,
    0x94, 0x06, 0x09, 0x60, 0x66, 0xa3, 0x10, 0x60, 0x66, 0x89, 0x16, 0x14, 0x60, 0xe6, 0x10, 0xf4};

TEST_P(Locked, Cmpxchg8bWithTwoVcpus) {
  GuestMem mem(0x8000);
  std::memcpy(mem.ptr + 0x1000, k_cmpxchg8b_guest.data(), k_cmpxchg8b_guest.size());
  int vm = create_vm();
  ASSERT_EQ(set_region(vm, 0, 0, 0, 0x8000, mem.uaddr()), 0);
  int vcpu0 = create_vcpu(vm, 0);
  kvm_run* run = map_run(vcpu0);
  start_real_mode_at_0x1000(vcpu0);
  ASSERT_GE(create_vcpu(vm, 1), 0);
  long rc;
  do {
    rc = io(vcpu0, KVM_RUN, 0ul);
  } while (rc == -EINTR);
  if (on_linux() && rc == 0 && run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
    GTEST_SKIP() << "this host's KVM cannot run the real-mode guest";
  ASSERT_EQ(rc, 0);
  ASSERT_EQ(run->exit_reason, uint32_t(KVM_EXIT_IO));
  EXPECT_EQ(run->io.port, 0x10);
  auto u32 = [&](uint32_t a) {
    uint32_t v;
    std::memcpy(&v, mem.ptr + a, 4);
    return v;
  };
  EXPECT_EQ(u32(0x6000), 0x33333333u) << "stored ECX:EBX on a match";
  EXPECT_EQ(u32(0x6004), 0x44444444u);
  EXPECT_EQ(mem.ptr[0x6008], 1) << "ZF after a match";
  EXPECT_EQ(mem.ptr[0x6009], 0) << "ZF after a mismatch";
  EXPECT_EQ(u32(0x6010), 0x33333333u) << "EAX loaded on a mismatch";
  EXPECT_EQ(u32(0x6014), 0x44444444u) << "EDX loaded on a mismatch";
}

}  // namespace
}  // namespace abitest
