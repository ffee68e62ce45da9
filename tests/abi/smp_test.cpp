// Two vCPUs on one VM with the in-kernel irqchip (Linux 6.1 arch/x86/kvm/
// lapic.c kvm_apic_accept_events, x86.c kvm_arch_vcpu_ioctl_run and
// kvm_arch_vcpu_ioctl_get/set_mpstate): an AP created after KVM_CREATE_IRQCHIP
// is UNINITIALIZED, and its KVM_RUN only waits for an event, accepts INIT/SIPI
// and returns EAGAIN; an INIT puts it in INIT_RECEIVED where KVM_RUN blocks
// (only a kick ends it, with EINTR), a SIPI starts it at the vector's page, and
// an NMI IPI reaches it through its IVT. KVM_GET_MP_STATE accepts INIT/SIPI
// first; KVM_SET_MP_STATE(SIPI_RECEIVED) latches a SIPI at the last vector.
// The BSP drives its xAPIC ICR from real mode through FS (base 0xfee00000);
// SmpStates sends INIT and SIPI from the host as MSIs.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "abi.h"

namespace abitest {
namespace {

// The kicked thread's run area: SIGUSR1's handler sets its immediate_exit
// (on anykvm the handler runs inside KVM_RUN, as QEMU's kick does).
thread_local kvm_run* t_run = nullptr;

void on_kick(int) {
  if (t_run) t_run->immediate_exit = 1;
}

class Smp : public Abi {
 protected:
  void SetUp() override {
    Abi::SetUp();
    struct sigaction sa {};
    sa.sa_handler = on_kick;
    sigaction(SIGUSR1, &sa, &m_old);
  }
  void TearDown() override {
    sigaction(SIGUSR1, &m_old, nullptr);
    Abi::TearDown();
  }
  struct sigaction m_old {};
};
ABI_SUITE(Smp);

// BSP at 0000:1000. ICR high = APIC ID 1; INIT (0x4500); OUT 0x10; SIPI
// vector 2 (0x4602); spin until the AP wrote 0xabcd at 0x6000; NMI (0x4400);
// OUT 0x10; spin.
const std::vector<uint8_t> k_bsp = {
    0x66, 0xb8, 0x00, 0x00, 0x00, 0x01, 0x64, 0x66, 0xa3, 0x10, 0x03, 0x66, 0xb8, 0x00, 0x45,
    0x00, 0x00, 0x64, 0x66, 0xa3, 0x00, 0x03, 0xe6, 0x10, 0x66, 0xb8, 0x02, 0x46, 0x00, 0x00,
    0x64, 0x66, 0xa3, 0x00, 0x03, 0x81, 0x3e, 0x00, 0x60, 0xcd, 0xab, 0x75, 0xf8, 0x66, 0xb8,
    0x00, 0x44, 0x00, 0x00, 0x64, 0x66, 0xa3, 0x00, 0x03, 0xe6, 0x10, 0xeb, 0xfe};
// AP at 0200:0000 (SIPI vector 2): mov word [0x6000], 0xabcd; out 0x11; hlt.
const std::vector<uint8_t> k_ap = {0xc7, 0x06, 0x00, 0x60, 0xcd, 0xab, 0xe6, 0x11, 0xf4, 0xeb, 0xfe};
// NMI handler at 0000:2100 (IVT entry 2): mov word [0x6002], 0x1234; out 0x12; hlt.
const std::vector<uint8_t> k_nmi = {0xc7, 0x06, 0x02, 0x60, 0x34, 0x12, 0xe6, 0x12, 0xf4, 0xeb, 0xfe};

// MSI data for KVM_SIGNAL_MSI (delivery mode in bits 10:8, edge): an INIT, or
// a SIPI with its vector in bits 7:0, sent from the host.
constexpr uint32_t k_msi_init = 5u << 8, k_msi_sipi = 6u << 8;

// A VM with the in-kernel irqchip, 64 KiB of RAM holding k_ap at 0x2000, vCPU
// 0 (the BSP) and vCPU 1 (an AP, UNINITIALIZED), both with the supported
// CPUID; the AP's run area is in t_run for the kick.
struct TwoVcpus {
  int vm = -1, bsp = -1, ap = -1;
  kvm_run* ap_run = nullptr;
};

}  // namespace

// Fixture helpers for the INIT/SIPI tests (Linux 6.1 x86.c: the UNINITIALIZED
// branch of kvm_arch_vcpu_ioctl_run, kvm_arch_vcpu_ioctl_get/set_mpstate).
class SmpStates : public Smp {
 protected:
  TwoVcpus make(GuestMem& mem) {
    TwoVcpus t;
    std::memcpy(mem.ptr + 0x2000, k_ap.data(), k_ap.size());
    t.vm = create_vm();
    EXPECT_EQ(io(t.vm, KVM_CREATE_IRQCHIP, 0ul), 0);
    EXPECT_EQ(set_region(t.vm, 0, 0, 0, mem.size, mem.uaddr()), 0);
    t.bsp = create_vcpu(t.vm, 0);
    t.ap = create_vcpu(t.vm, 1);
    auto tp = std::make_unique<CpuidBuf>();
    tp->nent = 256;
    EXPECT_EQ(sys(k_GET_SUPPORTED_CPUID, tp.get()), 0);
    EXPECT_EQ(io(t.bsp, k_SET_CPUID2, tp.get()), 0);
    EXPECT_EQ(io(t.ap, k_SET_CPUID2, tp.get()), 0);
    // Linux's APIC map sees a vCPU created after its last recalculation only
    // once something (KVM_SET_LAPIC, as QEMU does) redoes it.
    kvm_lapic_state lapic;
    EXPECT_EQ(io(t.ap, KVM_GET_LAPIC, &lapic), 0);
    EXPECT_EQ(io(t.ap, KVM_SET_LAPIC, &lapic), 0);
    t.ap_run = map_run(t.ap);
    t_run = t.ap_run;
    return t;
  }
  void TearDown() override {
    t_run = nullptr;
    Smp::TearDown();
  }
  // INIT or SIPI (with its vector) to APIC ID 1; > 0 when it was delivered.
  long msi_to_ap(int vm, uint32_t data) {
    kvm_msi m{};
    m.address_lo = 0xfee00000u | (1u << 12);
    m.data = data;
    return io(vm, KVM_SIGNAL_MSI, &m);
  }
  uint32_t mp_state(int vcpu) {
    kvm_mp_state m{~0u};
    EXPECT_EQ(io(vcpu, KVM_GET_MP_STATE, &m), 0);
    return m.mp_state;
  }
  // KVM_RUN of the AP on this thread, kicked (SIGUSR1, which sets
  // immediate_exit) after 2 s so a KVM_RUN that blocks fails instead of hanging.
  long run_ap_with_watchdog(const TwoVcpus& t) {
    std::atomic<bool> done{false};
    pthread_t self = pthread_self();
    std::thread w([&] {
      for (int i = 0; i < 200 && !done.load(); ++i) usleep(10 * 1000);
      if (!done.load()) pthread_kill(self, SIGUSR1);
    });
    long r = io(t.ap, KVM_RUN, 0ul);
    done = true;
    w.join();
    t.ap_run->immediate_exit = 0;
    return r;
  }
};
ABI_SUITE(SmpStates);

TEST_P(SmpStates, UninitializedApRunReturnsEagainAfterAcceptingInit) {
  GuestMem mem(0x10000);
  TwoVcpus t = make(mem);
  EXPECT_EQ(mp_state(t.ap), uint32_t(KVM_MP_STATE_UNINITIALIZED));
  ASSERT_GT(msi_to_ap(t.vm, k_msi_init), 0);
  t.ap_run->exit_reason = KVM_EXIT_UNKNOWN;
  // The INIT makes it runnable for kvm_vcpu_block: accepted, then EAGAIN
  // (exit_reason untouched); the vCPU did not run.
  EXPECT_EQ(run_ap_with_watchdog(t), -EAGAIN);
  EXPECT_EQ(t.ap_run->exit_reason, uint32_t(KVM_EXIT_UNKNOWN));
  EXPECT_EQ(mp_state(t.ap), uint32_t(KVM_MP_STATE_INIT_RECEIVED));
  kvm_regs r{};
  ASSERT_EQ(io(t.ap, KVM_GET_REGS, &r), 0);
  EXPECT_EQ(r.rip, 0xfff0u);
  // INIT_RECEIVED is no longer that branch: the SIPI starts it in this KVM_RUN.
  ASSERT_GT(msi_to_ap(t.vm, k_msi_sipi | 0x02), 0);
  ASSERT_EQ(run_ap_with_watchdog(t), 0);
  EXPECT_EQ(t.ap_run->exit_reason, uint32_t(KVM_EXIT_IO));
  EXPECT_EQ(t.ap_run->io.port, 0x11);
}

TEST_P(SmpStates, UninitializedApDropsASipiWithoutInit) {
  GuestMem mem(0x10000);
  TwoVcpus t = make(mem);
  ASSERT_GT(msi_to_ap(t.vm, k_msi_sipi | 0x02), 0);
  EXPECT_EQ(run_ap_with_watchdog(t), -EAGAIN);  // woken, the SIPI dropped
  EXPECT_EQ(mp_state(t.ap), uint32_t(KVM_MP_STATE_UNINITIALIZED));
  // Nothing pending: it blocks until the kick, EINTR.
  EXPECT_EQ(run_ap_with_watchdog(t), -EINTR);
  EXPECT_EQ(t.ap_run->exit_reason, uint32_t(KVM_EXIT_INTR));
  EXPECT_EQ(mp_state(t.ap), uint32_t(KVM_MP_STATE_UNINITIALIZED));
}

TEST_P(SmpStates, GetMpStateAcceptsInitAndSipi) {
  GuestMem mem(0x10000);
  TwoVcpus t = make(mem);
  ASSERT_GT(msi_to_ap(t.vm, k_msi_init), 0);
  EXPECT_EQ(mp_state(t.ap), uint32_t(KVM_MP_STATE_INIT_RECEIVED));
  ASSERT_GT(msi_to_ap(t.vm, k_msi_sipi | 0x02), 0);
  EXPECT_EQ(mp_state(t.ap), uint32_t(KVM_MP_STATE_RUNNABLE));
  kvm_sregs s{};
  ASSERT_EQ(io(t.ap, KVM_GET_SREGS, &s), 0);
  EXPECT_EQ(s.cs.selector, 0x200);
  EXPECT_EQ(s.cs.base, 0x2000u);
  kvm_regs r{};
  ASSERT_EQ(io(t.ap, KVM_GET_REGS, &r), 0);
  EXPECT_EQ(r.rip, 0u);
  ASSERT_EQ(run_ap_with_watchdog(t), 0);
  EXPECT_EQ(t.ap_run->exit_reason, uint32_t(KVM_EXIT_IO));
  EXPECT_EQ(t.ap_run->io.port, 0x11);
}

TEST_P(SmpStates, SetMpStateSipiReceivedLatchesTheLastSipi) {
  GuestMem mem(0x10000);
  TwoVcpus t = make(mem);
  ASSERT_GT(msi_to_ap(t.vm, k_msi_init), 0);
  ASSERT_GT(msi_to_ap(t.vm, k_msi_sipi | 0x02), 0);
  ASSERT_EQ(run_ap_with_watchdog(t), -EAGAIN);  // UNINITIALIZED: accepted both, did not run
  ASSERT_EQ(run_ap_with_watchdog(t), 0);        // now it runs up to its OUT 0x11
  ASSERT_EQ(t.ap_run->exit_reason, uint32_t(KVM_EXIT_IO));
  // INIT_RECEIVED with a SIPI pending at the LAPIC's last SIPI vector: the
  // next accept (here KVM_GET_MP_STATE) starts it at 0200:0000 again.
  kvm_regs r{};
  ASSERT_EQ(io(t.ap, KVM_GET_REGS, &r), 0);
  r.rip = 0x1234;
  ASSERT_EQ(io(t.ap, KVM_SET_REGS, &r), 0);
  kvm_mp_state m{KVM_MP_STATE_SIPI_RECEIVED};
  ASSERT_EQ(io(t.ap, KVM_SET_MP_STATE, &m), 0);
  EXPECT_EQ(mp_state(t.ap), uint32_t(KVM_MP_STATE_RUNNABLE));
  ASSERT_EQ(io(t.ap, KVM_GET_REGS, &r), 0);
  EXPECT_EQ(r.rip, 0u);
  kvm_sregs s{};
  ASSERT_EQ(io(t.ap, KVM_GET_SREGS, &s), 0);
  EXPECT_EQ(s.cs.selector, 0x200);
  ASSERT_EQ(run_ap_with_watchdog(t), 0);
  EXPECT_EQ(t.ap_run->exit_reason, uint32_t(KVM_EXIT_IO));
  EXPECT_EQ(t.ap_run->io.port, 0x11);
  // States other than Linux's x86 ones are EINVAL.
  m.mp_state = KVM_MP_STATE_STOPPED;
  EXPECT_EQ(io(t.ap, KVM_SET_MP_STATE, &m), -EINVAL);
}

TEST_P(Smp, InitSipiNmiThroughTheIcr) {
  GuestMem mem(0x10000);
  std::memcpy(mem.ptr + 0x1000, k_bsp.data(), k_bsp.size());
  std::memcpy(mem.ptr + 0x2000, k_ap.data(), k_ap.size());
  std::memcpy(mem.ptr + 0x2100, k_nmi.data(), k_nmi.size());
  const uint16_t ivt_nmi[2] = {0x2100, 0x0000};
  std::memcpy(mem.ptr + 2 * 4, ivt_nmi, sizeof(ivt_nmi));
  int vm = create_vm();
  ASSERT_EQ(io(vm, KVM_CREATE_IRQCHIP, 0ul), 0);
  ASSERT_EQ(set_region(vm, 0, 0, 0, mem.size, mem.uaddr()), 0);
  int bsp = create_vcpu(vm, 0), ap = create_vcpu(vm, 1);
  {
    // The guests' CPUID: what the kernel supports (Linux's LAPIC wants it).
    auto tp = std::make_unique<CpuidBuf>();
    tp->nent = 256;
    ASSERT_EQ(sys(k_GET_SUPPORTED_CPUID, tp.get()), 0);
    ASSERT_EQ(io(bsp, k_SET_CPUID2, tp.get()), 0);
    ASSERT_EQ(io(ap, k_SET_CPUID2, tp.get()), 0);
  }
  kvm_run* bsp_run = map_run(bsp);
  kvm_run* ap_run = map_run(ap);
  // KVM_RUN until something other than EAGAIN (Linux's answer when an
  // UNINITIALIZED vCPU accepted INIT/SIPI) or EINTR (unless `stop_on_eintr`).
  auto run_ap = [&](bool stop_on_eintr) {
    long r;
    do {
      r = io(ap, KVM_RUN, 0ul);
    } while (r == -EAGAIN || (r == -EINTR && !stop_on_eintr && !ap_run->immediate_exit));
    return r;
  };
  t_run = bsp_run;
  start_real_mode_at_0x1000(bsp);
  kvm_sregs s;
  ASSERT_EQ(io(bsp, KVM_GET_SREGS, &s), 0);
  s.fs.base = 0xfee00000;  // the xAPIC page through FS:0x300 / FS:0x310
  ASSERT_EQ(io(bsp, KVM_SET_SREGS, &s), 0);

  // Linux's APIC map does not see a vCPU created after the last
  // recalculation until something (its KVM_SET_LAPIC, as QEMU does) redoes it.
  kvm_lapic_state lapic;
  ASSERT_EQ(io(ap, KVM_GET_LAPIC, &lapic), 0);
  ASSERT_EQ(io(ap, KVM_SET_LAPIC, &lapic), 0);

  kvm_mp_state mp{};
  ASSERT_EQ(io(ap, KVM_GET_MP_STATE, &mp), 0);
  EXPECT_EQ(mp.mp_state, uint32_t(KVM_MP_STATE_UNINITIALIZED));
  ASSERT_EQ(io(bsp, KVM_GET_MP_STATE, &mp), 0);
  EXPECT_EQ(mp.mp_state, uint32_t(KVM_MP_STATE_RUNNABLE));

  // A watchdog so a broken engine fails instead of hanging: kicks both.
  std::atomic<bool> done{false};
  pthread_t main_thread = pthread_self();
  std::atomic<pthread_t> ap_thread{main_thread};
  std::thread watchdog([&] {
    for (int i = 0; i < 200 && !done.load(); ++i) usleep(100 * 1000);
    if (done.load()) return;
    ADD_FAILURE() << "watchdog: vCPUs did not finish";
    pthread_kill(main_thread, SIGUSR1);
    if (ap_thread.load() != main_thread) pthread_kill(ap_thread.load(), SIGUSR1);
  });
  struct Finish {
    std::atomic<bool>& done;
    std::thread& w;
    ~Finish() {
      done = true;
      w.join();
    }
  } finish{done, watchdog};
  struct ResetTls {
    ~ResetTls() { t_run = nullptr; }
  } reset_tls;

  // 1. INIT: the AP's KVM_RUN blocks in INIT_RECEIVED until a kick.
  ASSERT_EQ(io(bsp, KVM_RUN, 0ul), 0);
  ASSERT_EQ(bsp_run->exit_reason, uint32_t(KVM_EXIT_IO));
  ASSERT_EQ(bsp_run->io.port, 0x10);
  std::atomic<bool> entered{false};
  long ap_r = 0;
  std::thread t1([&] {
    ap_thread = pthread_self();
    t_run = ap_run;
    entered = true;
    ap_r = run_ap(true);
  });
  while (!entered.load()) usleep(1000);
  usleep(200 * 1000);  // let it block (if it ran, it would exit at the reset vector instead)
  pthread_kill(ap_thread.load(), SIGUSR1);
  t1.join();
  EXPECT_EQ(ap_r, -EINTR);
  EXPECT_EQ(ap_run->exit_reason, uint32_t(KVM_EXIT_INTR));
  ASSERT_EQ(io(ap, KVM_GET_MP_STATE, &mp), 0);
  EXPECT_EQ(mp.mp_state, uint32_t(KVM_MP_STATE_INIT_RECEIVED));
  kvm_regs r{};
  ASSERT_EQ(io(ap, KVM_GET_REGS, &r), 0);
  EXPECT_EQ(r.rip, 0xfff0u);  // INIT reset
  ap_run->immediate_exit = 0;

  // 2. SIPI starts the AP at 0200:0000; then an NMI IPI through its IVT.
  uint16_t first_port = 0, second_port = 0;
  kvm_sregs ap_sregs{};
  long ap_r2 = 0;
  std::thread t2([&] {
    ap_thread = pthread_self();
    t_run = ap_run;
    ap_r = run_ap(false);
    if (ap_r != 0 || ap_run->exit_reason != KVM_EXIT_IO) return;
    first_port = ap_run->io.port;
    (void)io(ap, KVM_GET_SREGS, &ap_sregs);
    ap_r2 = run_ap(false);
    if (ap_r2 == 0 && ap_run->exit_reason == KVM_EXIT_IO) second_port = ap_run->io.port;
  });
  long bsp_r = io(bsp, KVM_RUN, 0ul);
  t2.join();
  ASSERT_EQ(bsp_r, 0);
  EXPECT_EQ(bsp_run->exit_reason, uint32_t(KVM_EXIT_IO));
  EXPECT_EQ(bsp_run->io.port, 0x10);
  EXPECT_EQ(ap_r, 0);
  EXPECT_EQ(first_port, 0x11);
  EXPECT_EQ(ap_sregs.cs.selector, 0x200);
  EXPECT_EQ(ap_sregs.cs.base, 0x2000u);
  EXPECT_EQ(ap_r2, 0);
  EXPECT_EQ(second_port, 0x12);  // the NMI handler ran
  uint16_t marks[2];
  std::memcpy(marks, mem.ptr + 0x6000, sizeof(marks));
  EXPECT_EQ(marks[0], 0xabcd);
  EXPECT_EQ(marks[1], 0x1234);
  ASSERT_EQ(io(ap, KVM_GET_MP_STATE, &mp), 0);
  EXPECT_EQ(mp.mp_state, uint32_t(KVM_MP_STATE_RUNNABLE));
}

}  // namespace abitest
