from base.runtime import serve
from stages.sample_frames.handler import FUNCTION

if __name__ == "__main__":
    serve(FUNCTION)
