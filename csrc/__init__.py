"""The CUDA C++ sources, shipped inside the package as ``tedrec_fast.csrc`` (data only: ``*.cu``, ``*.cuh``).

``tedrec_fast.cuda`` compiles them: ahead of time into the extension ``tedrec_fast._C``, at run time
with NVRTC through CuPy, or on the CPU with the test emulator in ``emulate/``.
"""
