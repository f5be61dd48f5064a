# Beyond the article: Pool.map over MPI, with mpi4py's MPIPoolExecutor.
# Run it with `mpiexec -n 4 python3 -m mpi4py.futures mpi-map/python/mpi_map.py`:
# rank 0 runs this script, ranks 1 to 3 are the pool's workers.
from mpi4py.futures import MPIPoolExecutor


def f(x):
    return x * x


if __name__ == '__main__':
    p = MPIPoolExecutor()
    print(list(p.map(f, [1, 2, 3])))
