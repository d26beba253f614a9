package dev.loragateway.bench.gpu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

class TableTest {
    @Test
    void rendersMarkdownWithColumnsPaddedToTheWidestCell() {
        String s = new Table("D", "sgmv µs").row("1", "12.5").row("64", "1234.0").render();
        assertEquals("| D   | sgmv µs |\n"
            + "|-----|---------|\n"
            + "| 1   | 12.5    |\n"
            + "| 64  | 1234.0  |\n", s);
    }

    @Test
    void aRowMustHaveOneCellPerColumn() {
        var e = assertThrows(IllegalArgumentException.class, () -> new Table("a", "b").row("1"));
        assertEquals("a row of 1 cells in a table of 2 columns", e.getMessage());
    }

    @Test
    void numbersUseAPointAndUnmeasuredValuesADash() {
        assertEquals("3.14", Table.num(Math.PI, 2));
        assertEquals("1235", Table.num(1234.5, 0));
        assertEquals("-", Table.num(Double.NaN, 1));
        assertEquals("-", Table.num(Double.POSITIVE_INFINITY, 1));
    }
}
