from base.runtime import serve
from stages.extract_audio.handler import FUNCTION

if __name__ == "__main__":
    serve(FUNCTION)
