import math, anyio, pytest
from agent_messaging import InvalidArgument
async def test_nan(am):
    try:
        o = await am.register_organization("o", "O", {"x": math.nan})
        print("RESULT", o)
    except Exception as e:
        print("EXC", type(e), e)
    print("rows", await am.database.fetch_val("SELECT count(*) FROM organizations"), await am.database.fetch("SELECT metadata::text FROM organizations"))
