// VM-fd ioctls with Linux 6.1's argument rules (virt/kvm/kvm_main.c:
// kvm_vm_ioctl_create_vcpu, __kvm_set_memory_region, kvm_get_dirty_log_protect;
// arch/x86/kvm/x86.c: kvm_arch_vm_ioctl) and the lifetime of VM objects.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "abi.h"

namespace abitest {
namespace {

class Vm : public Abi {};
ABI_SUITE(Vm);

TEST_P(Vm, CreateSeveralVcpus) {
  int vm = create_vm();
  int a = create_vcpu(vm, 0), b = create_vcpu(vm, 1), c = create_vcpu(vm, 7);
  EXPECT_TRUE(a >= 0 && b >= 0 && c >= 0 && a != b && b != c);
  EXPECT_EQ(fcntl(a, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
}

TEST_P(Vm, CreateVcpuDuplicateIsEexist) {
  int vm = create_vm();
  create_vcpu(vm, 3);
  EXPECT_EQ(io(vm, KVM_CREATE_VCPU, 3), -EEXIST);
  // 6.1 takes the id as a u32 and drops the upper half (later kernels: EINVAL).
  if (!on_linux()) {
    EXPECT_EQ(io(vm, KVM_CREATE_VCPU, (1ul << 32) | 3), -EEXIST);
  }
}

TEST_P(Vm, VcpuIdStaysTakenAfterItsFdIsClosed) {
  int vm = create_vm();
  int v = create_vcpu(vm, 5);
  close_fd(v);
  EXPECT_EQ(io(vm, KVM_CREATE_VCPU, 5), -EEXIST);
}

TEST_P(Vm, CreateVcpuIdAtOrPastMaxVcpuIdIsEinval) {
  int vm = create_vm();
  long max_id = sys(KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPU_ID);
  ASSERT_GT(max_id, 0);
  EXPECT_EQ(io(vm, KVM_CREATE_VCPU, max_id), -EINVAL);
  EXPECT_EQ(io(vm, KVM_CREATE_VCPU, 0xffffffffu), -EINVAL);
  EXPECT_GE(create_vcpu(vm, max_id - 1), 0);
}

TEST_P(Vm, CreateVcpuPastMaxVcpusIsEinval) {
  ANYKVM_ONLY("a kernel's limit is 1024 or more vCPUs");
  int vm = create_vm();
  long max = sys(KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
  ASSERT_GT(max, 0);
  for (long i = 0; i < max; ++i) ASSERT_GE(create_vcpu(vm, i), 0) << i;
  EXPECT_EQ(io(vm, KVM_CREATE_VCPU, max), -EINVAL);
  EXPECT_EQ(io(vm, KVM_CREATE_VCPU, 0), -EINVAL) << "the limit is checked before the duplicate id";
}

// ---- KVM_SET_USER_MEMORY_REGION ----

TEST_P(Vm, SetRegionBadPointerIsEfault) {
  int vm = create_vm();
  EXPECT_EQ(io(vm, KVM_SET_USER_MEMORY_REGION, bad_ptr()), -EFAULT);
  EXPECT_EQ(io(vm, KVM_SET_USER_MEMORY_REGION, 0ul), -EFAULT);
}

TEST_P(Vm, SetRegionMisalignedIsEinval) {
  int vm = create_vm();
  GuestMem m(0x4000);
  EXPECT_EQ(set_region(vm, 0, 0, 0, 0x1800, m.uaddr()), -EINVAL);
  EXPECT_EQ(set_region(vm, 0, 0, 0x800, 0x1000, m.uaddr()), -EINVAL);
  EXPECT_EQ(set_region(vm, 0, 0, 0, 0x1000, m.uaddr() + 8), -EINVAL);
  EXPECT_EQ(set_region(vm, 0, 0, 0, 0x1000, m.uaddr()), 0);
}

TEST_P(Vm, SetRegionBadFlagsSlotAndRangeAreEinval) {
  int vm = create_vm();
  GuestMem m(0x4000);
  EXPECT_EQ(set_region(vm, 0, 1u << 2, 0, 0x1000, m.uaddr()), -EINVAL);
  EXPECT_EQ(set_region(vm, 0, 0x80000000u, 0, 0x1000, m.uaddr()), -EINVAL);
  long nslots = sys(KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);
  ASSERT_GT(nslots, 0);
  EXPECT_EQ(set_region(vm, uint32_t(nslots), 0, 0, 0x1000, m.uaddr()), -EINVAL);
  EXPECT_EQ(set_region(vm, 0xffff, 0, 0, 0x1000, m.uaddr()), -EINVAL);
  EXPECT_EQ(set_region(vm, 2u << 16, 0, 0, 0x1000, m.uaddr()), -EINVAL);  // address space 2
  EXPECT_EQ(set_region(vm, uint32_t(nslots - 1), 0, 0, 0x1000, m.uaddr()), 0);
  // access_ok(): the host range must lie in user space.
  EXPECT_EQ(set_region(vm, 1, 0, 0x10000, 0x2000, 0x7ffffffff000ull), -EINVAL);
  EXPECT_EQ(set_region(vm, 1, 0, 0x10000, 0x1000, 0xffff800000000000ull), -EINVAL);
  EXPECT_EQ(set_region(vm, 1, 0, 0x10000, 0, 0xffff800000000000ull), -EINVAL);  // even for a delete
  // The guest range must not wrap.
  EXPECT_EQ(set_region(vm, 1, 0, 0xfffffffffffff000ull, 0x2000, m.uaddr()), -EINVAL);
}

TEST_P(Vm, SetRegionOverlapIsEexist) {
  int vm = create_vm();
  GuestMem m(0x10000);
  ASSERT_EQ(set_region(vm, 0, 0, 0x10000, 0x4000, m.uaddr()), 0);
  EXPECT_EQ(set_region(vm, 1, 0, 0x13000, 0x2000, m.uaddr()), -EEXIST);
  EXPECT_EQ(set_region(vm, 1, 0, 0xf000, 0x2000, m.uaddr()), -EEXIST);
  EXPECT_EQ(set_region(vm, 1, 0, 0x11000, 0x1000, m.uaddr()), -EEXIST);
  EXPECT_EQ(set_region(vm, 1, 0, 0x14000, 0x1000, m.uaddr()), 0) << "adjacent is fine";
  EXPECT_EQ(set_region(vm, 2, 0, 0xf000, 0x1000, m.uaddr()), 0) << "adjacent below is fine";
  // Host ranges may overlap freely.
  EXPECT_EQ(set_region(vm, 3, 0, 0x100000, 0x4000, m.uaddr()), 0);
}

TEST_P(Vm, SetRegionDeleteBySizeZero) {
  int vm = create_vm();
  GuestMem m(0x4000);
  EXPECT_EQ(set_region(vm, 4, 0, 0x10000, 0, m.uaddr()), -EINVAL) << "deleting a slot that does not exist";
  ASSERT_EQ(set_region(vm, 4, 0, 0x10000, 0x4000, m.uaddr()), 0);
  EXPECT_EQ(set_region(vm, 5, 0, 0x10000, 0x1000, m.uaddr()), -EEXIST);
  EXPECT_EQ(set_region(vm, 4, 0, 0, 0, 0), 0) << "delete ignores the other fields";
  EXPECT_EQ(set_region(vm, 4, 0, 0, 0, 0), -EINVAL) << "already deleted";
  EXPECT_EQ(set_region(vm, 5, 0, 0x10000, 0x1000, m.uaddr()), 0) << "the range is free again";
}

TEST_P(Vm, SetRegionModifyRules) {
  int vm = create_vm();
  GuestMem m(0x8000);
  ASSERT_EQ(set_region(vm, 0, 0, 0x10000, 0x4000, m.uaddr()), 0);
  EXPECT_EQ(set_region(vm, 0, 0, 0x10000, 0x4000, m.uaddr()), 0) << "no change";
  EXPECT_EQ(set_region(vm, 0, KVM_MEM_LOG_DIRTY_PAGES, 0x10000, 0x4000, m.uaddr()), 0) << "flags only";
  EXPECT_EQ(set_region(vm, 0, 0, 0x10000, 0x4000, m.uaddr()), 0) << "flags only, back";
  EXPECT_EQ(set_region(vm, 0, KVM_MEM_READONLY, 0x10000, 0x4000, m.uaddr()), -EINVAL) << "READONLY cannot change";
  EXPECT_EQ(set_region(vm, 0, 0, 0x10000, 0x2000, m.uaddr()), -EINVAL) << "size cannot change";
  EXPECT_EQ(set_region(vm, 0, 0, 0x10000, 0x4000, m.uaddr() + 0x1000), -EINVAL) << "host address cannot change";
  ASSERT_EQ(set_region(vm, 1, 0, 0x40000, 0x1000, m.uaddr()), 0);
  EXPECT_EQ(set_region(vm, 0, 0, 0x3e000, 0x4000, m.uaddr()), -EEXIST) << "move onto another slot";
  EXPECT_EQ(set_region(vm, 0, 0, 0x20000, 0x4000, m.uaddr()), 0) << "move";
  EXPECT_EQ(set_region(vm, 2, 0, 0x10000, 0x4000, m.uaddr()), 0) << "the old range is free";
  EXPECT_EQ(set_region(vm, 3, 0, 0x21000, 0x1000, m.uaddr()), -EEXIST) << "the new range is taken";
}

TEST_P(Vm, SetRegionUnmappedHostMemoryIsAccepted) {
  // Linux does not look at the host mapping until the guest touches it.
  int vm = create_vm();
  EXPECT_EQ(set_region(vm, 0, 0, 0x10000, 0x1000, bad_ptr()), 0);
}

TEST_P(Vm, GuestTouchingUnmappedHostMemory) {
  // 6.1: KVM_RUN fails with EFAULT; 6.18 exits with KVM_EXIT_MMIO.
  if (!on_linux()) GTEST_SKIP() << "anykvm difference: see docs/abi-differences.md (the host process faults)";
  // mov al, [0x3000] ; hlt   with slot 1 at 0x3000 backed by a PROT_NONE page.
  Guest g = real_mode_guest({0xa0, 0x00, 0x30, 0xf4});
  ASSERT_EQ(set_region(g.vm, 1, 0, 0x3000, 0x1000, bad_ptr()), 0);
  long r = run(g);
  EXPECT_TRUE(r == -EFAULT || (r == 0 && g.run->exit_reason == KVM_EXIT_MMIO)) << r;
}

// ---- KVM_GET_DIRTY_LOG ----

// mov byte [0x5000], 1 ; mov byte [0x7000], 1 ; hlt
const std::vector<uint8_t> k_dirty_code = {0xc6, 0x06, 0x00, 0x50, 0x01, 0xc6, 0x06, 0x00, 0x70, 0x01, 0xf4};

TEST_P(Vm, GetDirtyLog) {
  Guest g = real_mode_guest(k_dirty_code);
  GuestMem data(0x4000);
  ASSERT_EQ(set_region(g.vm, 1, KVM_MEM_LOG_DIRTY_PAGES, 0x4000, 0x4000, data.uaddr()), 0);
  uint64_t bitmap[2] = {~0ull, ~0ull};
  kvm_dirty_log log{};
  log.slot = 1;
  log.dirty_bitmap = bitmap;
  ASSERT_EQ(io(g.vm, KVM_GET_DIRTY_LOG, &log), 0);
  EXPECT_EQ(bitmap[0], 0u) << "nothing written yet";
  EXPECT_EQ(bitmap[1], ~0ull) << "one 64-bit word for 4 pages";
  ASSERT_EQ(run(g), 0);
  ASSERT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_HLT));
  EXPECT_EQ(data.ptr[0x1000], 1);
  ASSERT_EQ(io(g.vm, KVM_GET_DIRTY_LOG, &log), 0);
  EXPECT_EQ(bitmap[0], 0b1010u);
  ASSERT_EQ(io(g.vm, KVM_GET_DIRTY_LOG, &log), 0);
  EXPECT_EQ(bitmap[0], 0u) << "reading the log clears it";
  // Written again after the log was read: logged again.
  kvm_regs r{};
  r.rip = 0x1000;
  r.rflags = 2;
  ASSERT_EQ(io(g.vcpu, KVM_SET_REGS, &r), 0);
  ASSERT_EQ(run(g), 0);
  ASSERT_EQ(io(g.vm, KVM_GET_DIRTY_LOG, &log), 0);
  EXPECT_EQ(bitmap[0], 0b1010u);
}

TEST_P(Vm, DirtyLoggingEnabledByFlagsOnlyChange) {
  Guest g = real_mode_guest(k_dirty_code);
  GuestMem data(0x4000);
  ASSERT_EQ(set_region(g.vm, 1, 0, 0x4000, 0x4000, data.uaddr()), 0);
  uint64_t bitmap = ~0ull;
  kvm_dirty_log log{};
  log.slot = 1;
  log.dirty_bitmap = &bitmap;
  EXPECT_EQ(io(g.vm, KVM_GET_DIRTY_LOG, &log), -ENOENT) << "no dirty logging on this slot";
  ASSERT_EQ(set_region(g.vm, 1, KVM_MEM_LOG_DIRTY_PAGES, 0x4000, 0x4000, data.uaddr()), 0);
  ASSERT_EQ(run(g), 0);
  ASSERT_EQ(io(g.vm, KVM_GET_DIRTY_LOG, &log), 0);
  EXPECT_EQ(bitmap, 0b1010u);
}

TEST_P(Vm, GetDirtyLogErrors) {
  int vm = create_vm();
  GuestMem data(0x4000);
  ASSERT_EQ(set_region(vm, 1, KVM_MEM_LOG_DIRTY_PAGES, 0x4000, 0x4000, data.uaddr()), 0);
  uint64_t bitmap = 0;
  kvm_dirty_log log{};
  log.dirty_bitmap = &bitmap;
  EXPECT_EQ(io(vm, KVM_GET_DIRTY_LOG, bad_ptr()), -EFAULT);
  log.slot = 2;
  EXPECT_EQ(io(vm, KVM_GET_DIRTY_LOG, &log), -ENOENT) << "no such slot";
  log.slot = uint32_t(sys(KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS));
  EXPECT_EQ(io(vm, KVM_GET_DIRTY_LOG, &log), -EINVAL);
  log.slot = (2u << 16) | 1;
  EXPECT_EQ(io(vm, KVM_GET_DIRTY_LOG, &log), -EINVAL);
  log.slot = 1;
  log.dirty_bitmap = reinterpret_cast<void*>(bad_ptr());
  EXPECT_EQ(io(vm, KVM_GET_DIRTY_LOG, &log), -EFAULT);
  log.dirty_bitmap = &bitmap;
  EXPECT_EQ(io(vm, KVM_GET_DIRTY_LOG, &log), 0);
}

// ---- KVM_MEM_READONLY ----

TEST_P(Vm, ReadonlySlotReadsMemoryAndWritesExitAsMmio) {
  // mov al, [0x2000] ; mov [0x2001], al ; hlt
  Guest g = real_mode_guest({0xa0, 0x00, 0x20, 0xa2, 0x01, 0x20, 0xf4});
  GuestMem ro(0x1000);
  ro.ptr[0] = 0x5a;
  ro.ptr[1] = 0x11;
  ASSERT_EQ(set_region(g.vm, 1, KVM_MEM_READONLY, 0x2000, 0x1000, ro.uaddr()), 0);
  ASSERT_EQ(run(g), 0);
  ASSERT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_MMIO));
  EXPECT_TRUE(g.run->mmio.is_write);
  EXPECT_EQ(g.run->mmio.phys_addr, 0x2001u);
  EXPECT_EQ(g.run->mmio.len, 1u);
  EXPECT_EQ(g.run->mmio.data[0], 0x5a) << "the read came from the slot";
  ASSERT_EQ(run(g), 0);
  EXPECT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_HLT));
  EXPECT_EQ(ro.ptr[1], 0x11) << "the slot was not written";
}

// ---- Other VM ioctls ----

TEST_P(Vm, SetTssAddr) {
  int vm = create_vm();
  EXPECT_EQ(io(vm, KVM_SET_TSS_ADDR, 0xfffbd000ul), 0);
  EXPECT_EQ(io(vm, KVM_SET_TSS_ADDR, 0xffffd000ul), 0) << "(unsigned int)(-3 * PAGE_SIZE)";
  EXPECT_EQ(io(vm, KVM_SET_TSS_ADDR, 0xffffd001ul), -EINVAL);
  EXPECT_EQ(io(vm, KVM_SET_TSS_ADDR, 0xfffff000ul), -EINVAL);
  EXPECT_EQ(io(vm, KVM_SET_TSS_ADDR, 0x100000000ul), -EINVAL);
}

TEST_P(Vm, SetIdentityMapAddr) {
  int vm = create_vm();
  uint64_t addr = 0xfffbc000;
  EXPECT_EQ(io(vm, KVM_SET_IDENTITY_MAP_ADDR, bad_ptr()), -EFAULT);
  EXPECT_EQ(io(vm, KVM_SET_IDENTITY_MAP_ADDR, &addr), 0);
  create_vcpu(vm, 0);
  EXPECT_EQ(io(vm, KVM_SET_IDENTITY_MAP_ADDR, &addr), -EINVAL) << "only before the first vCPU";
  EXPECT_EQ(io(vm, KVM_SET_IDENTITY_MAP_ADDR, bad_ptr()), -EINVAL) << "checked before the copy";
}

TEST_P(Vm, EnableCap) {
  int vm = create_vm();
  kvm_enable_cap cap{};
  EXPECT_EQ(io(vm, KVM_ENABLE_CAP, bad_ptr()), -EFAULT);
  cap.cap = 0x7fffffff;
  EXPECT_EQ(io(vm, KVM_ENABLE_CAP, &cap), -EINVAL);
  cap.cap = KVM_CAP_X86_DISABLE_EXITS;
  cap.flags = 1;
  EXPECT_EQ(io(vm, KVM_ENABLE_CAP, &cap), -EINVAL) << "flags must be 0";
}

TEST_P(Vm, SetGsiRoutingWithoutIrqchipIsEinval) {
  int vm = create_vm();
  EXPECT_EQ(io(vm, k_SET_GSI_ROUTING, bad_ptr()), -EFAULT);
  RoutingBuf r{};
  EXPECT_EQ(io(vm, k_SET_GSI_ROUTING, &r), -EINVAL);  // kvm_arch_can_set_irq_routing(): no irqchip
  r.nr = 1;
  r.e[0].gsi = 0;
  r.e[0].type = KVM_IRQ_ROUTING_IRQCHIP;
  EXPECT_EQ(io(vm, k_SET_GSI_ROUTING, &r), -EINVAL);
}

TEST_P(Vm, IrqLineWithoutIrqchipIsEnxio) {
  int vm = create_vm();
  EXPECT_EQ(io(vm, KVM_IRQ_LINE, bad_ptr()), -EFAULT);
  kvm_irq_level l{};
  l.irq = 4;
  l.level = 1;
  EXPECT_EQ(io(vm, KVM_IRQ_LINE, &l), -ENXIO);
}

// ---- Lifetime: a VM lives while any fd to it or to one of its vCPUs is open ----

TEST_P(Vm, VcpuKeepsVmAliveAfterVmAndSystemFdsClose) {
  GuestMem code(0x1000);
  code.ptr[0] = 0x90;  // nop
  code.ptr[1] = 0xf4;  // hlt
  int k2 = be().open_kvm();
  ASSERT_GE(k2, 0);
  int vm = int(io(k2, KVM_CREATE_VM, 0ul));
  ASSERT_GE(vm, 0);
  ASSERT_EQ(set_region(vm, 0, 0, 0x1000, 0x1000, code.uaddr()), 0);
  int vcpu = int(io(vm, KVM_CREATE_VCPU, 0ul));
  ASSERT_GE(vcpu, 0);
  kvm_run* run_area = map_run(vcpu);
  ASSERT_NE(run_area, nullptr);
  kvm_sregs s;
  ASSERT_EQ(io(vcpu, KVM_GET_SREGS, &s), 0);
  s.cs.base = 0;
  s.cs.selector = 0;
  ASSERT_EQ(io(vcpu, KVM_SET_SREGS, &s), 0);
  kvm_regs r{};
  r.rip = 0x1000;
  r.rflags = 2;
  ASSERT_EQ(io(vcpu, KVM_SET_REGS, &r), 0);
  be().close(vm);
  be().close(k2);
  ASSERT_EQ(io(vcpu, KVM_RUN, 0ul), 0);
  EXPECT_EQ(run_area->exit_reason, uint32_t(KVM_EXIT_HLT));
  ASSERT_EQ(io(vcpu, KVM_GET_REGS, &r), 0);
  EXPECT_EQ(r.rip, 0x1002u);
  be().close(vcpu);
}

TEST_P(Vm, DupOfVmFdKeepsVmAlive) {
  int vm = create_vm();
  int copy = be().dup(vm);
  ASSERT_GE(copy, 0);
  close_fd(vm);
  GuestMem m(0x1000);
  EXPECT_EQ(set_region(copy, 0, 0, 0, 0x1000, m.uaddr()), 0);
  long v = io(copy, KVM_CREATE_VCPU, 0);
  EXPECT_GE(v, 0);
  if (v >= 0) be().close(int(v));
  be().close(copy);
}

TEST_P(Vm, ForkChildGetsEioOnVmAndVcpuButMayCreateVms) {
  int vm = create_vm();
  int vcpu = create_vcpu(vm, 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int bad = 0;
    kvm_regs r;
    if (io(vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) != -EIO) bad |= 1;
    if (io(vcpu, KVM_GET_REGS, &r) != -EIO) bad |= 2;
    if (io(vcpu, KVM_RUN, 0ul) != -EIO) bad |= 4;
    if (sys(KVM_GET_API_VERSION) != 12) bad |= 8;
    long vm2 = sys(KVM_CREATE_VM, 0);
    if (vm2 < 0 || io(int(vm2), KVM_CREATE_VCPU, 0) < 0) bad |= 16;
    _exit(bad);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "bit mask of failed checks in the child";
  // The parent is unaffected.
  kvm_regs r;
  EXPECT_EQ(io(vcpu, KVM_GET_REGS, &r), 0);
}

}  // namespace
}  // namespace abitest
