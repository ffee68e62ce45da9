// /dev/kvm ioctls and the errno of unknown requests on each kind of fd
// (virt/kvm/kvm_main.c kvm_dev_ioctl / kvm_vm_ioctl / kvm_vcpu_ioctl and the
// x86 defaults in arch/x86/kvm/x86.c, Linux 6.1).
#include <fcntl.h>
#include <sys/ioctl.h>
#include <termios.h>

#include <set>

#include "abi.h"
#include "kvmapi/kvmapi.h"

namespace abitest {
namespace {

class System : public Abi {};
ABI_SUITE(System);

TEST_P(System, FlexArrayRequestsAsC) {
  ANYKVM_ONLY("compares with kvmapi's table");
  const std::pair<const char*, unsigned long> expected[] = {
      {"KVM_GET_MSR_INDEX_LIST", k_GET_MSR_INDEX_LIST}, {"KVM_GET_SUPPORTED_CPUID", k_GET_SUPPORTED_CPUID},
      {"KVM_SET_CPUID2", k_SET_CPUID2},                 {"KVM_GET_CPUID2", k_GET_CPUID2},
      {"KVM_GET_MSRS", k_GET_MSRS},                     {"KVM_SET_MSRS", k_SET_MSRS},
      {"KVM_SET_SIGNAL_MASK", k_SET_SIGNAL_MASK},       {"KVM_SET_GSI_ROUTING", k_SET_GSI_ROUTING}};
  for (const auto& [name, number] : expected) {
    bool found = false;
    for (const auto& i : anykvm::kvmapi::ioctls())
      if (!strcmp(i.name, name)) {
        found = true;
        EXPECT_EQ(i.number, number) << name;
      }
    EXPECT_TRUE(found) << name;
  }
}

TEST_P(System, GetApiVersion) {
  EXPECT_EQ(sys(KVM_GET_API_VERSION), 12);
  EXPECT_EQ(sys(KVM_GET_API_VERSION, 1), -EINVAL);  // "if (arg) goto out" with r = -EINVAL
}

TEST_P(System, RequestIsComparedOnItsLow32Bits) {
  // QEMU passes requests sign-extended; the kernel's ioctl takes an unsigned int.
  EXPECT_EQ(sys(0xffffffff00000000ul | KVM_GET_API_VERSION), 12);
  EXPECT_EQ(sys(0x1234567800000000ul | KVM_GET_VCPU_MMAP_SIZE), long(mmap_size()));
}

TEST_P(System, CreateVmType0) {
  long vm = sys(KVM_CREATE_VM, 0);
  ASSERT_GE(vm, 0);
  EXPECT_EQ(fcntl(int(vm), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);  // anon_inode_getfd(O_CLOEXEC)
  be().close(int(vm));
  EXPECT_EQ(sys(KVM_CREATE_VM, 0x80), -EINVAL);
  EXPECT_EQ(sys(KVM_CREATE_VM, ~0ul), -EINVAL);
}

TEST_P(System, CreateVmOtherTypesAreEinvalIn61) {
  ANYKVM_ONLY("newer kernels accept KVM_X86_SW_PROTECTED_VM and SEV types");
  for (unsigned long type = 1; type < 8; ++type) EXPECT_EQ(sys(KVM_CREATE_VM, type), -EINVAL) << type;
}

TEST_P(System, GetVcpuMmapSize) {
  EXPECT_EQ(sys(KVM_GET_VCPU_MMAP_SIZE), 3 * 4096);  // kvm_run, PIO page, coalesced-MMIO page
  EXPECT_EQ(sys(KVM_GET_VCPU_MMAP_SIZE, 1), -EINVAL);
}

TEST_P(System, CheckExtensionUnknownIsZero) {
  EXPECT_EQ(sys(KVM_CHECK_EXTENSION, 0x7fffffff), 0);
  EXPECT_EQ(sys(KVM_CHECK_EXTENSION, ~0ul), 0);
  int vm = create_vm();
  EXPECT_EQ(io(vm, KVM_CHECK_EXTENSION, 0x7fffffff), 0);
  EXPECT_EQ(io(vm, KVM_CHECK_EXTENSION, ~0ul), 0);
}

TEST_P(System, CheckExtensionSameOnSystemAndVmFd) {
  int vm = create_vm();
  for (long cap : {KVM_CAP_USER_MEMORY, KVM_CAP_SET_TSS_ADDR, KVM_CAP_EXT_CPUID, KVM_CAP_NR_MEMSLOTS, KVM_CAP_MAX_VCPU_ID,
                   KVM_CAP_READONLY_MEM, KVM_CAP_IRQCHIP, KVM_CAP_IMMEDIATE_EXIT})
    EXPECT_EQ(sys(KVM_CHECK_EXTENSION, cap), io(vm, KVM_CHECK_EXTENSION, cap)) << cap;
}

TEST_P(System, GetMsrIndexList) {
  EXPECT_EQ(sys(k_GET_MSR_INDEX_LIST, bad_ptr()), -EFAULT);
  MsrListBuf l{};
  l.nmsrs = 0;
  EXPECT_EQ(sys(k_GET_MSR_INDEX_LIST, &l), -E2BIG);
  const uint32_t n = l.nmsrs;  // the count is written back before E2BIG
  ASSERT_GT(n, 0u);
  ASSERT_LE(n, 1024u);
  l.nmsrs = n - 1;
  EXPECT_EQ(sys(k_GET_MSR_INDEX_LIST, &l), -E2BIG);
  l.nmsrs = 1024;
  EXPECT_EQ(sys(k_GET_MSR_INDEX_LIST, &l), 0);
  EXPECT_EQ(l.nmsrs, n);
  std::set<uint32_t> seen(l.indices, l.indices + n);
  EXPECT_EQ(seen.size(), n) << "duplicate MSR indices";
  EXPECT_TRUE(seen.count(0x174)) << "IA32_SYSENTER_CS";
}

TEST_P(System, GetMsrIndexListEntriesFault) {
  // The header is readable, the indices are not writable.
  uint8_t* two = static_cast<uint8_t*>(mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(two, MAP_FAILED);
  ASSERT_EQ(mprotect(two + 4096, 4096, PROT_NONE), 0);
  auto* hdr = reinterpret_cast<MsrListBuf*>(two + 4096 - 4);  // nmsrs readable, indices not
  hdr->nmsrs = 4096;
  EXPECT_EQ(sys(k_GET_MSR_INDEX_LIST, hdr), -EFAULT);
  munmap(two, 8192);
}

TEST_P(System, GetSupportedCpuid) {
  EXPECT_EQ(sys(k_GET_SUPPORTED_CPUID, bad_ptr()), -EFAULT);
  auto c = std::make_unique<CpuidBuf>();
  c->nent = 0;
  EXPECT_EQ(sys(k_GET_SUPPORTED_CPUID, c.get()), -E2BIG);
  c->nent = 1;
  EXPECT_EQ(sys(k_GET_SUPPORTED_CPUID, c.get()), -E2BIG);
  c->nent = 256;
  ASSERT_EQ(sys(k_GET_SUPPORTED_CPUID, c.get()), 0);
  ASSERT_GT(c->nent, 1u);
  ASSERT_LE(c->nent, 256u);
  bool leaf0 = false, leaf1 = false;
  for (uint32_t i = 0; i < c->nent; ++i) {
    if (c->e[i].function == 0) leaf0 = c->e[i].eax >= 1;
    if (c->e[i].function == 1) leaf1 = true;
  }
  EXPECT_TRUE(leaf0 && leaf1);
  // More than KVM_MAX_CPUID_ENTRIES is clamped, not refused.
  auto big = std::make_unique<CpuidBuf>();
  big->nent = 100000;
  EXPECT_EQ(sys(k_GET_SUPPORTED_CPUID, big.get()), 0);
  EXPECT_EQ(big->nent, c->nent);
}

TEST_P(System, GetSupportedCpuidEntriesFault) {
  uint8_t* two = static_cast<uint8_t*>(mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(two, MAP_FAILED);
  ASSERT_EQ(mprotect(two + 4096, 4096, PROT_NONE), 0);
  auto* hdr = reinterpret_cast<CpuidBuf*>(two + 4096 - 8);
  hdr->nent = 256;
  EXPECT_EQ(sys(k_GET_SUPPORTED_CPUID, hdr), -EFAULT);
  munmap(two, 8192);
}

TEST_P(System, UnknownIoctlOnSystemFdIsEinval) {
  // kvm_dev_ioctl -> kvm_arch_dev_ioctl: default r = -EINVAL.
  EXPECT_EQ(sys(_IO(KVMIO, 0xff)), -EINVAL);
  EXPECT_EQ(sys(KVM_CREATE_VCPU, 0), -EINVAL);
  EXPECT_EQ(sys(KVM_RUN, 0), -EINVAL);
  EXPECT_EQ(sys(KVM_SET_USER_MEMORY_REGION, 0ul), -EINVAL);
  EXPECT_EQ(sys(TCGETS, bad_ptr()), -EINVAL);
}

TEST_P(System, TraceIoctlsAreEopnotsupp) {
  ANYKVM_ONLY("later kernels removed them (EINVAL)");
  EXPECT_EQ(sys(KVM_TRACE_ENABLE, 0ul), -EOPNOTSUPP);
  EXPECT_EQ(sys(KVM_TRACE_PAUSE, 0ul), -EOPNOTSUPP);
  EXPECT_EQ(sys(KVM_TRACE_DISABLE, 0ul), -EOPNOTSUPP);
}

TEST_P(System, UnknownIoctlOnVmFdIsEnotty) {
  // kvm_vm_ioctl -> kvm_arch_vm_ioctl: default r = -ENOTTY.
  int vm = create_vm();
  EXPECT_EQ(io(vm, _IO(KVMIO, 0xff)), -ENOTTY);
  EXPECT_EQ(io(vm, KVM_GET_API_VERSION), -ENOTTY);
  EXPECT_EQ(io(vm, KVM_RUN, 0), -ENOTTY);
  EXPECT_EQ(io(vm, TCGETS, bad_ptr()), -ENOTTY);
}

TEST_P(System, UnknownIoctlOnVcpuFdIsEinval) {
  // kvm_vcpu_ioctl: a non-KVMIO type is EINVAL; kvm_arch_vcpu_ioctl's default too.
  int vm = create_vm();
  int vcpu = create_vcpu(vm, 0);
  EXPECT_EQ(io(vcpu, _IO(KVMIO, 0xff)), -EINVAL);
  EXPECT_EQ(io(vcpu, KVM_CREATE_VCPU, 1), -EINVAL);
  EXPECT_EQ(io(vcpu, KVM_GET_API_VERSION), -EINVAL);
  EXPECT_EQ(io(vcpu, TCGETS, bad_ptr()), -EINVAL);
}

TEST_P(System, GenericFdIoctlsWorkOnKvmFds) {
  // FIOCLEX/FIONCLEX/FIONBIO are handled by the VFS before the driver sees them.
  int vm = create_vm();
  int vcpu = create_vcpu(vm, 0);
  for (int fd : {kvm(), vm, vcpu}) {
    EXPECT_EQ(io(fd, FIONCLEX), 0);
    EXPECT_EQ(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
    EXPECT_EQ(io(fd, FIOCLEX), 0);
    EXPECT_EQ(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    int on = 1;
    EXPECT_EQ(io(fd, FIONBIO, &on), 0);
    EXPECT_TRUE(fcntl(fd, F_GETFL) & O_NONBLOCK);
    on = 0;
    EXPECT_EQ(io(fd, FIONBIO, &on), 0);
    EXPECT_FALSE(fcntl(fd, F_GETFL) & O_NONBLOCK);
  }
}

}  // namespace
}  // namespace abitest
