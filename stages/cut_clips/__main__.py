from base.runtime import serve
from stages.cut_clips.handler import FUNCTION

if __name__ == "__main__":
    serve(FUNCTION)
