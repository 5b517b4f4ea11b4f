import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """The tests use tiny tensors, for which intra-op threads only contend (many times slower on
    a busy 2-core machine). Subprocess tests (DDP, CLI kill/resume) set their own threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
