// tedrec_fast._C: the ahead-of-time build of the kernels in kernels.cu (every op's), and one launcher.
//
// Thin on purpose: the Python side (tedrec_fast.cuda) owns the launch description (grid, block,
// dynamic shared memory, stream) and packs the arguments with tedrec_fast.cuda.abi.pack_args into one
// byte buffer plus each parameter's offset; this module points cudaLaunchKernel's parameter array into
// that buffer. The same kernel text is what NVRTC compiles at run time (see csrc/README.md).
//
// Only pybind11 (from torch's include directory, as CUDAExtension sets it up) is needed: nothing here
// touches a tensor. <torch/extension.h> would work as well but costs about 5x the compile time (the
// whole libtorch C++ API parsed by cudafe++, by cicc once per target and by the host compiler).
#include <cuda_runtime.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels.cu"

namespace py = pybind11;

namespace {

// name -> entry point, in TEDREC_KERNELS order
#define TEDREC_KERNEL_ENTRY(name) {#name, reinterpret_cast<const void*>(&name)},
const std::vector<std::pair<std::string, const void*>> kKernels = {TEDREC_KERNELS(TEDREC_KERNEL_ENTRY)};
#undef TEDREC_KERNEL_ENTRY

constexpr int kDefaultDynamicSmem = 48 * 1024;  // above this a kernel must opt in

const void* find_kernel(const std::string& name) {
    for (const auto& entry : kKernels) {
        if (entry.first == name) return entry.second;
    }
    throw py::key_error("tedrec_fast._C: unknown kernel '" + name + "' (see kernel_names())");
}

void check(cudaError_t status, const char* call, const std::string& kernel) {
    if (status != cudaSuccess) {
        throw std::runtime_error(std::string("tedrec_fast._C: ") + call + " failed for kernel '" + kernel +
                                 "': " + cudaGetErrorString(status) + " (" + cudaGetErrorName(status) + ")");
    }
}

// Raise the kernel's dynamic shared memory limit to `smem` when it is above the default, once per
// (kernel, device, larger size): not on every launch, and so not inside a CUDA graph capture that
// replays launches of a size already seen.
void opt_in_dynamic_smem(const void* f, std::size_t smem, const std::string& kernel) {
    if (smem <= static_cast<std::size_t>(kDefaultDynamicSmem)) return;
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice", kernel);
    static std::mutex mutex;
    static std::map<std::pair<const void*, int>, std::size_t> granted;
    std::lock_guard<std::mutex> lock(mutex);
    std::size_t& current = granted[{f, device}];
    if (smem <= current) return;
    check(cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
          "cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize)", kernel);
    current = smem;
}

void launch(const std::string& kernel, std::array<unsigned int, 3> grid, std::array<unsigned int, 3> block,
            std::size_t smem, std::uintptr_t stream, const py::bytes& packed, const std::vector<std::size_t>& offsets) {
    const void* f = find_kernel(kernel);
    char* data = nullptr;
    Py_ssize_t size = 0;
    if (PyBytes_AsStringAndSize(packed.ptr(), &data, &size) != 0) throw py::error_already_set();
    std::vector<void*> params(offsets.size());
    for (std::size_t i = 0; i < offsets.size(); ++i) {
        if (offsets[i] >= static_cast<std::size_t>(size)) {
            throw py::value_error("tedrec_fast._C: offset " + std::to_string(offsets[i]) + " of parameter " +
                                  std::to_string(i) + " of kernel '" + kernel + "' is past the " +
                                  std::to_string(size) + "-byte argument buffer");
        }
        params[i] = data + offsets[i];
    }
    // `packed` stays referenced by the caller's frame, so its bytes outlive the launch call; the
    // runtime copies the parameters before cudaLaunchKernel returns
    py::gil_scoped_release nogil;
    opt_in_dynamic_smem(f, smem, kernel);
    check(cudaLaunchKernel(f, dim3(grid[0], grid[1], grid[2]), dim3(block[0], block[1], block[2]), params.data(), smem,
                           reinterpret_cast<cudaStream_t>(stream)),
          "cudaLaunchKernel", kernel);
}

std::vector<std::string> kernel_names() {
    std::vector<std::string> names;
    names.reserve(kKernels.size());
    for (const auto& entry : kKernels) names.push_back(entry.first);
    return names;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() =
        "The CUDA C++ kernels of csrc/spectral_fusion.cu, built ahead of time, and their launcher.\n\n"
        "Arguments are packed by tedrec_fast.cuda.abi.pack_args: launch() points the kernel's parameter\n"
        "array into the packed bytes at the given offsets and calls cudaLaunchKernel on the given stream.";
    m.def("launch", &launch, py::arg("kernel"), py::arg("grid"), py::arg("block"), py::arg("smem"), py::arg("stream"),
          py::arg("packed"), py::arg("offsets"),
          "launch(kernel, grid, block, smem, stream, packed, offsets) -> None\n\n"
          "Launch `kernel` with grid and block (3-tuples), `smem` bytes of dynamic shared memory (opted in\n"
          "with cudaFuncSetAttribute above 48 KiB) on the CUDA stream whose handle is `stream` (0: the\n"
          "legacy default stream; torch: torch.cuda.current_stream().cuda_stream), on the current device.\n"
          "`packed` and `offsets` come from tedrec_fast.cuda.abi.pack_args. Raises KeyError for an unknown\n"
          "kernel, ValueError for an offset outside `packed` and RuntimeError, naming the kernel and the CUDA\n"
          "error, when a CUDA call fails.");
    m.def("kernel_names", &kernel_names, "kernel_names() -> list[str]: every kernel launch() knows, in source order.");
}
