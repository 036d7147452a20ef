from base.runtime import serve
from stages.transcode_clip.handler import FUNCTION

if __name__ == "__main__":
    serve(FUNCTION)
