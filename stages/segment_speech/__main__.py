from base.runtime import serve
from stages.segment_speech.handler import FUNCTION

if __name__ == "__main__":
    serve(FUNCTION)
