from base.runtime import serve
from stages.search.handler import FUNCTION

if __name__ == "__main__":
    serve(FUNCTION)
